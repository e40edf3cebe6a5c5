#!/usr/bin/env bash
# Installs the dependencies (Debian packages) when missing, builds everything, and runs
# every test with ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
topotune_install_deps
mkdir -p build
topotune_build build
cd build
ctest --output-on-failure -j 2 "$@"
