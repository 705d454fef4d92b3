// fulcrumd: the Fulcrum data plane. fulcrumd [EAL options] -- [fulcrumd options]
#include "dataplane/daemon.h"

int main(int argc, char** argv) { return fulcrum::DaemonMain(argc, argv); }
