#!/usr/bin/env bash
# The emulated edge/cloud testbed (examples/testbed/testbed.sh), as a user starts it: `up`
# registers a cloud and an edge worker, each with its class and site, the edge with its
# CPU and memory limits and behind its shaped link, and the gateway's link test between
# the two sites measures that link; `down` removes every namespace, link,
# cgroup and process it made. Skips (77) without root or network namespaces.
# Usage: tests/testbed_test.sh BUILD_DIR
set -euo pipefail
build="$(cd "$1" && pwd)"
repo="$(cd "$(dirname "$0")/.." && pwd)"
testbed="$repo/examples/testbed/testbed.sh"
[ "$(id -u)" = 0 ] || { echo "SKIP: the testbed needs root"; exit 77; }
probe="tt-probe-$$"
if ! ip netns add "$probe" 2>/dev/null; then
  echo "SKIP: no network namespaces here"
  exit 77
fi
ip netns del "$probe"

dir="$(mktemp -d)"
cleanup() {
  "$testbed" down "$dir" >/dev/null 2>&1 || true
  rm -rf "$dir"
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*"
  for log in "$dir"/*.log; do
    echo "== $log"
    tail -5 "$log"
  done
  exit 1
}

BUILD_DIR="$build" "$testbed" up "$dir"
# shellcheck disable=SC1091
source "$dir/testbed.env"
topotune=("$build/api/topotune" --server "http://127.0.0.1:$HTTP_PORT" --token-file
  "$dir/user.token")
devices=""
for _ in $(seq 120); do  # the edge starts LibTorch on a quarter of a core
  devices=$("${topotune[@]}" devices 2>/dev/null || true)
  grep -q "^class edge:" <<<"$devices" && grep -q "^class cloud:" <<<"$devices" && break
  sleep 0.5
done
echo "$devices"
grep -q "^class cloud: .*sites: cloud; workers: cloud-1$" <<<"$devices" ||
  fail "the cloud worker is not registered as class cloud at site cloud"
# Its limits, as the edge worker read them from its cgroups: 1 CPU (a quarter), 1.5 GiB.
grep -q "^class edge: .*, 1 cores, 1.5 GiB; sites: edge-1; workers: edge-1$" <<<"$devices" ||
  fail "the edge worker is not registered as class edge at site edge-1 with its limits"
# Under the cgroup's memory limit the edge caps its own address space, so that a batch
# that does not fit fails to allocate instead of getting the worker killed.
grep -q "address space capped at .* from its cgroup's memory limit of 1536 MiB" "$dir/edge-1.log" ||
  fail "the edge worker did not cap its address space under its cgroup's memory limit"
tc qdisc show dev "$VETH_HOST" | grep -q "tbf .*rate 10Mbit" || fail "$VETH_HOST is not shaped"
ip netns exec "$NETNS" tc qdisc show dev "$VETH_NS" | grep -q "tbf .*rate 10Mbit" ||
  fail "$VETH_NS is not shaped"

# The gateway's link test between the two sites: a worker at each, 4 MiB straight from one
# to the other over the shaped veth pair, so about 10 Mbit/s less the headers.
direct=""
for _ in $(seq 60); do
  direct=$("${topotune[@]}" topology --json 2>/dev/null |
    python3 -c 'import json,sys; l=json.load(sys.stdin)["links"]; print(l[0]["direct"]["bandwidth_mbit_s"] if l and l[0]["direct"] else "")' || true)
  [ -n "$direct" ] && break
  sleep 0.5
done
echo "link test cloud <-> edge-1: $direct Mbit/s"
[ -n "$direct" ] || fail "no link test between the sites"
python3 -c "import sys; sys.exit(0 if 7 <= $direct <= 11 else 1)" ||
  fail "the link test measured $direct Mbit/s on a 10 Mbit/s link"

"$testbed" down "$dir"
! ip netns list | grep -qw "$NETNS" || fail "namespace $NETNS is left"
! ip link show "$VETH_HOST" >/dev/null 2>&1 || fail "link $VETH_HOST is left"
for cg in $CGROUPS; do [ ! -d "$cg" ] || fail "cgroup $cg is left"; done
for pid in $PIDS; do ! kill -0 "$pid" 2>/dev/null || fail "process $pid is left"; done
[ ! -f "$dir/testbed.env" ] || fail "testbed.env is left"
echo "PASS: up registered both classes, the link test measured the shaped link; down left nothing"
