#!/usr/bin/env bash
# Prepares .gpukit/: Debian's packages of the headers (and CMake package files) that a
# worker-only build needs besides LibTorch, for a GPU machine that has a CUDA LibTorch
# (inside its PyTorch) but no -dev packages and no network: Boost (Boost.Asio), nlohmann_json,
# Eigen and zlib. Run it here (Debian, with Debian's registry reachable); the device command
# carries .gpukit and bench/gpu/run_checks.sh unpacks it there (dpkg -x into a folder of
# its own). About 12 MB.
set -euo pipefail
cd "$(dirname "$0")/../.."

KIT=.gpukit
PACKAGES="libboost1.74-dev nlohmann-json3-dev libeigen3-dev zlib1g-dev"
grep -qx '/.gpukit/' .git/info/exclude 2>/dev/null || echo '/.gpukit/' >>.git/info/exclude
rm -rf "$KIT"
mkdir -p "$KIT"
# apt runs downloads as _apt, which cannot write into a root-owned folder elsewhere.
(cd "$KIT" && apt-get download $PACKAGES 2>&1 |
  grep -v '^W: Download is performed unsandboxed' || true)
count=$(ls "$KIT"/*.deb 2>/dev/null | wc -l)
[ "$count" -eq 4 ] || { echo "make_kit: expected 4 packages in $KIT, got $count" >&2; exit 1; }
echo "wrote $KIT ($(du -sh "$KIT" | cut -f1)): $(cd "$KIT" && ls *.deb | tr '\n' ' ')"
