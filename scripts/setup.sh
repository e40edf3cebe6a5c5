# Sourced by examples/quickstart.sh, tests/run.sh and .ci/run: installs what is missing
# from Debian's packages, then configures and builds. Functions only; nothing runs on source.

# libopenblas0-openmp: LibTorch's CPU matrix products call libblas.so.3, which is netlib's
# unoptimised reference BLAS unless an optimised one is installed; OpenBLAS's OpenMP build
# follows LibTorch's thread count. LeNet's linear layers run ~18x faster with it.
# iproute2: ip and tc for the emulated edge/cloud testbed (examples/testbed/).
# libgloo-dev: Gloo's headers, for the data-parallel probe (LibTorch's c10d over Gloo).
TOPOTUNE_PACKAGES="libtorch-dev libopenblas0-openmp libboost-dev nlohmann-json3-dev \
libcpp-httplib-dev libsqlite3-dev libgtest-dev libeigen3-dev zlib1g-dev cmake g++ make \
pkg-config sqlite3 iproute2 libgloo-dev"

topotune_install_deps() {
  local missing=""
  for p in $TOPOTUNE_PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
      missing="$missing $p"
  done
  [ -z "$missing" ] && return 0
  topotune_apt_install $missing
}

# topotune_apt_install PACKAGE...: installs Debian packages (with sudo when not root).
topotune_apt_install() {
  echo "==> installing: $*"
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@"
}

# topotune_build BUILD_DIR [cmake -D options...] -- [targets...]
topotune_build() {
  local dir="$1"
  shift
  local cmake_args=()
  while [ $# -gt 0 ] && [ "$1" != "--" ]; do
    cmake_args+=("$1")
    shift
  done
  [ "${1:-}" = "--" ] && shift
  local jobs
  jobs=$(nproc 2>/dev/null || echo 2)
  echo "==> building in $dir"
  mkdir -p "$dir"
  cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=Release "${cmake_args[@]}" >"$dir/cmake.log" 2>&1 ||
    { cat "$dir/cmake.log"; return 1; }
  if [ $# -gt 0 ]; then
    cmake --build "$dir" -j "$jobs" --target "$@"
  else
    cmake --build "$dir" -j "$jobs"
  fi
}
