// Daemon: fulcrumd's whole life — EAL, options, ports, stats segment, workers, control loop,
// clean shutdown on SIGINT/SIGTERM. A clear message and exit status 1 on any start-up failure.
#pragma once

namespace fulcrum {

int DaemonMain(int argc, char** argv);

}  // namespace fulcrum
