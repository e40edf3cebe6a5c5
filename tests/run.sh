#!/usr/bin/env bash
# Checks the include layering, installs the dependencies (Debian packages) when missing,
# builds everything, and runs every test with ctest. With TOPOTUNE_CI=1 (.ci/run sets it)
# compiler warnings are errors (-DTOPOTUNE_WERROR=ON), otherwise they are only printed; and
# after ctest each libFuzzer harness runs for 60 s (tests/fuzz/run.sh: clang, build-fuzz/).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
scripts/check_layering.sh
topotune_install_deps
werror=OFF
if [ "${TOPOTUNE_CI:-0}" = 1 ]; then werror=ON; fi
mkdir -p build
# Always passed, so that a build directory configured by CI does not keep -Werror.
topotune_build build -DTOPOTUNE_WERROR="$werror"
(cd build && ctest --output-on-failure -j 2 "$@")
if [ "${TOPOTUNE_CI:-0}" = 1 ]; then
  tests/fuzz/run.sh 60
fi
