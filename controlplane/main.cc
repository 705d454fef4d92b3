// fulcrumctl: the control-plane process (`serve`) and its command-line client.
#include "controlplane/cli.h"

int main(int argc, char** argv) { return fulcrum::controlplane::RunCli(argc, argv); }
