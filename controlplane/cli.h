// Cli: fulcrumctl's command line (CLI11): `serve` runs the control-plane process, every other
// command is a client of it; `validate` and `plan` also work without a server. Exit codes are
// protocol.h's ExitCode (docs/controlplane.md lists them).
#pragma once

namespace fulcrum::controlplane {

int RunCli(int argc, char** argv);

}  // namespace fulcrum::controlplane
