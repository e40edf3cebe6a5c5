#include "api/cli.h"

int main(int argc, char** argv) { return topotune::RunCli(argc, argv); }
