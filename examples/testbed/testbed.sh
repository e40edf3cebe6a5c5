#!/usr/bin/env bash
# An emulated edge/cloud testbed on one machine (root): a controller and two workers whose
# devices differ as an edge board and a cloud server would.
#
#   examples/testbed/testbed.sh up DIR     start it; DIR/testbed.env says where things are;
#                                          returns once its workers are connected
#   examples/testbed/testbed.sh down DIR   stop it and remove everything it created
#   examples/testbed/testbed.sh status DIR
#
# - "cloud": a worker with 2 threads and no limit, in this network namespace, next to the
#   controller (--class cloud --site cloud).
# - "edge": a worker with 1 thread inside a CPU quota of EDGE_CPU of a core (default 0.25)
#   and a memory limit of EDGE_MEMORY_MB (default 1536), in its own network namespace
#   (tt-edge-<N>) joined to this one by a veth pair shaped to EDGE_MBIT Mbit/s (default 10)
#   in both directions with tc tbf (--class edge --site edge-1). It reaches the controller
#   at 10.99.<N>.1 over that link only.
#   CPU and memory limits: cgroup v1 (cpu.cfs_quota_us, memory.limit_in_bytes) where those
#   controllers are mounted, else cgroup v2 (cpu.max, memory.max); with neither, taskset to
#   one core and --memory-budget (the quota is then a whole core: it says so).
#   Latency: tc netem where the kernel has it (EDGE_DELAY_MS, default 20, each way); this
#   development machine's kernel has none, so the latency is not emulated there and the
#   script says so (declare it in the topology file instead).
# Environment: BUILD_DIR [build], EDGE_CPU, EDGE_MEMORY_MB, EDGE_MBIT, EDGE_DELAY_MS,
# EDGE_PROBE_SECONDS (the edge worker's --probe-seconds; default the worker's 1 s), and
# TESTBED_WORKERS ["cloud edge"]: which of the two workers to start.
set -euo pipefail

cmd="${1:-}"
dir="${2:-}"
if [ -z "$cmd" ] || [ -z "$dir" ]; then
  sed -n '2,8p' "$0" >&2
  exit 2
fi
repo="$(cd "$(dirname "$0")/../.." && pwd)"
build="${BUILD_DIR:-$repo/build}"
[ "$(id -u)" = 0 ] || { echo "testbed: needs root (namespaces, tc, cgroups)" >&2; exit 2; }

# One testbed per DIR; its index N picks the namespace and addresses, so two can coexist.
env_file() { echo "$dir/testbed.env"; }

down() {
  [ -f "$(env_file)" ] || { echo "testbed: nothing at $dir"; return 0; }
  # shellcheck disable=SC1090,SC2153  # NETNS, VETH_HOST, PIDS, CGROUPS come from the file
  source "$(env_file)"
  for pid in ${PIDS:-}; do kill "$pid" 2>/dev/null || true; done
  for pid in ${PIDS:-}; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  done
  ip netns del "$NETNS" 2>/dev/null && echo "removed network namespace $NETNS (and its veth pair)"
  ip link del "$VETH_HOST" 2>/dev/null || true
  for cg in ${CGROUPS:-}; do
    [ -d "$cg" ] && rmdir "$cg" && echo "removed cgroup $cg"
  done
  rm -f "$(env_file)"
}

status() {
  [ -f "$(env_file)" ] || { echo "testbed: nothing at $dir"; return 1; }
  cat "$(env_file)"
  # shellcheck disable=SC1090,SC2153
  source "$(env_file)"
  tc qdisc show dev "$VETH_HOST"
  ip netns exec "$NETNS" tc qdisc show dev "$VETH_NS"
}

up() {
  mkdir -p "$dir"
  dir="$(cd "$dir" && pwd)"
  [ ! -f "$(env_file)" ] || { echo "testbed: $dir already holds one (down it first)" >&2; exit 1; }
  local n=1
  while ip netns list | grep -qw "tt-edge-$n"; do n=$((n + 1)); done
  local netns="tt-edge-$n" veth_host="tt-e$n-h" veth_ns="tt-e$n-n"
  local host_ip="10.99.$n.1" ns_ip="10.99.$n.2"
  local cpu="${EDGE_CPU:-0.25}" memory_mb="${EDGE_MEMORY_MB:-1536}" mbit="${EDGE_MBIT:-10}"
  local delay_ms="${EDGE_DELAY_MS:-20}"
  local pids="" cgroups="" notes=""
  save() {
    cat >"$(env_file)" <<EOF
NETNS=$netns
VETH_HOST=$veth_host
VETH_NS=$veth_ns
HOST_IP=$host_ip
NS_IP=$ns_ip
PIDS="$pids"
CGROUPS="$cgroups"
HTTP_PORT=${http_port:-}
WORKER_PORT=${worker_port:-}
ADMIN_TOKEN_FILE=$dir/admin.token
USER_TOKEN_FILE=$dir/user.token
EDGE_CPU=$cpu
EDGE_MEMORY_MB=$memory_mb
EDGE_MBIT=$mbit
NOTES="$notes"
EOF
  }
  trap 'echo "testbed: up failed; removing what it made" >&2; save; down' ERR

  # The edge's network: its own namespace behind a shaped veth pair.
  ip netns add "$netns"
  save
  ip link add "$veth_host" type veth peer name "$veth_ns"
  ip link set "$veth_ns" netns "$netns"
  ip addr add "$host_ip/24" dev "$veth_host"
  ip link set "$veth_host" up
  ip netns exec "$netns" ip addr add "$ns_ip/24" dev "$veth_ns"
  ip netns exec "$netns" ip link set "$veth_ns" up
  ip netns exec "$netns" ip link set lo up
  # Each end's egress: netem delay (where the kernel has it) over tbf at mbit Mbit/s. The
  # burst lets one MTU-sized packet through at once; the queue holds 50 ms of traffic.
  local netem=yes
  shape() {  # DEV [ip netns exec NS]
    local dev="$1"
    shift
    if [ "$netem" = yes ] &&
      "$@" tc qdisc add dev "$dev" root handle 1: netem delay "${delay_ms}ms" 2>/dev/null; then
      "$@" tc qdisc add dev "$dev" parent 1: handle 2: tbf rate "${mbit}mbit" burst 32kbit \
        latency 50ms
    else
      netem=no
      "$@" tc qdisc add dev "$dev" root handle 1: tbf rate "${mbit}mbit" burst 32kbit latency 50ms
    fi
  }
  shape "$veth_host"
  shape "$veth_ns" ip netns exec "$netns"
  if [ "$netem" = yes ]; then
    notes="latency ${delay_ms} ms each way by netem"
  else
    tc qdisc replace dev "$veth_host" root handle 1: tbf rate "${mbit}mbit" burst 32kbit \
      latency 50ms
    notes="no netem in this kernel: the link's latency is not emulated (declare it)"
  fi
  echo "testbed: $notes"

  # The edge's CPU and memory.
  local cg_cpu="" cg_mem="" period=100000
  local quota
  quota=$(awk -v c="$cpu" -v p="$period" 'BEGIN { printf "%d", c * p }')
  if [ -f /sys/fs/cgroup/cpu/cpu.cfs_quota_us ]; then
    cg_cpu="/sys/fs/cgroup/cpu/topotune-testbed-$n"
    mkdir "$cg_cpu"
    cgroups="$cg_cpu"
    save
    echo "$period" >"$cg_cpu/cpu.cfs_period_us"
    echo "$quota" >"$cg_cpu/cpu.cfs_quota_us"
  fi
  if [ -f /sys/fs/cgroup/memory/memory.limit_in_bytes ]; then
    cg_mem="/sys/fs/cgroup/memory/topotune-testbed-$n"
    mkdir "$cg_mem"
    cgroups="$cgroups $cg_mem"
    save
    echo $((memory_mb << 20)) >"$cg_mem/memory.limit_in_bytes"
  fi
  local v2=/sys/fs/cgroup
  [ -f /sys/fs/cgroup/unified/cgroup.controllers ] && v2=/sys/fs/cgroup/unified
  if { [ -z "$cg_cpu" ] || [ -z "$cg_mem" ]; } && [ -f "$v2/cgroup.controllers" ]; then
    local cg2="$v2/topotune-testbed-$n"
    mkdir "$cg2"
    cgroups="$cgroups $cg2"
    save
    if [ -z "$cg_cpu" ] && grep -qw cpu "$v2/cgroup.controllers"; then
      echo "$quota $period" >"$cg2/cpu.max"
      cg_cpu="$cg2"
    fi
    if [ -z "$cg_mem" ] && grep -qw memory "$v2/cgroup.controllers"; then
      echo $((memory_mb << 20)) >"$cg2/memory.max"
      cg_mem="$cg2"
    fi
  fi
  local edge_prefix=() edge_flags=()
  if [ -z "$cg_cpu" ]; then
    notes="$notes; no cgroup CPU controller: the edge is pinned to one whole core (taskset)"
    edge_prefix=(taskset -c 0)
  fi
  [ -n "$cg_mem" ] || edge_flags=(--memory-budget "$memory_mb")
  [ -z "${EDGE_PROBE_SECONDS:-}" ] || edge_flags+=(--probe-seconds "$EDGE_PROBE_SECONDS")

  # The controller: REST on loopback, the gateway on every address (the edge comes over
  # the veth).
  (umask 077 && head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$dir/admin.token")
  rm -f "$dir/ports.json"
  "$build/api/topotuned" --db "$dir/topotune.db" --http 127.0.0.1:0 --workers 0.0.0.0:0 \
    --ports-file "$dir/ports.json" --admin-token-file "$dir/admin.token" \
    >"$dir/topotuned.log" 2>&1 &
  pids="$!"
  save
  for _ in $(seq 100); do [ -s "$dir/ports.json" ] && break; sleep 0.1; done
  http_port=$(sed 's/.*"http": *\([0-9]*\).*/\1/' "$dir/ports.json")
  worker_port=$(sed 's/.*"workers": *\([0-9]*\).*/\1/' "$dir/ports.json")
  local topotune=("$build/api/topotune" --server "http://127.0.0.1:$http_port")
  TOPOTUNE_TOKEN=$(cat "$dir/admin.token") "${topotune[@]}" token create --role user \
    >"$dir/user.token" 2>>"$dir/topotuned.log"
  TOPOTUNE_TOKEN=$(cat "$dir/admin.token") "${topotune[@]}" token create --role worker \
    >"$dir/worker.token" 2>>"$dir/topotuned.log"
  save

  local workers=" ${TESTBED_WORKERS:-cloud edge} "
  if [[ "$workers" == *" cloud "* ]]; then
    "$build/workers/topotune-worker" --controller "127.0.0.1:$worker_port" --name cloud-1 \
      --class cloud --site cloud --threads 2 --token-file "$dir/worker.token" \
      --checkpoint-dir "$dir/ckpt-cloud" --data-root "$dir" --connect-timeout 60 \
      >"$dir/cloud-1.log" 2>&1 &
    pids="$pids $!"
    save
  fi
  # The edge joins its cgroups, then enters its network namespace with nsenter (not `ip
  # netns exec`, which mounts the namespace's own /sys and hides /sys/fs/cgroup: the worker
  # reads its limits there to report its memory and CPUs), and execs the worker.
  if [[ "$workers" != *" edge "* ]]; then
    trap - ERR
    wait_registered "${topotune[@]}" -- cloud-1
    echo "testbed: up in $dir without the edge worker (REST http://127.0.0.1:$http_port)"
    return 0
  fi
  local join="true"
  for cg in $cg_cpu $cg_mem; do
    if [ -f "$cg/tasks" ]; then join="$join; echo \$\$ > $cg/tasks"; else join="$join; echo \$\$ > $cg/cgroup.procs"; fi
  done
  sh -c "$join; exec \"\$@\"" edge-1 nsenter --net="/run/netns/$netns" "${edge_prefix[@]}" \
    "$build/workers/topotune-worker" --controller "$host_ip:$worker_port" --name edge-1 \
    --class edge --site edge-1 --threads 1 "${edge_flags[@]}" \
    --token-file "$dir/worker.token" --checkpoint-dir "$dir/ckpt-edge" --data-root "$dir" \
    --connect-timeout 60 >"$dir/edge-1.log" 2>&1 &
  pids="$pids $!"
  save
  trap - ERR
  local started=(edge-1)
  [[ "$workers" == *" cloud "* ]] && started=(cloud-1 edge-1)
  wait_registered "${topotune[@]}" -- "${started[@]}"
  echo "testbed: up in $dir (REST http://127.0.0.1:$http_port, user token $dir/user.token)"
}

# wait_registered TOPOTUNE_CMD... -- NAME...: waits (at most 60 s) until the controller
# lists each named worker as connected, so that a job submitted next sees every class: a
# job that counts seconds on the edge would otherwise start the cloud's trials before the
# edge is there, and count their seconds as measured.
wait_registered() {
  local cmd=()
  while [ "$1" != "--" ]; do cmd+=("$1"); shift; done
  shift
  local listed missing
  for _ in $(seq 600); do
    listed=$(TOPOTUNE_TOKEN=$(cat "$dir/user.token") "${cmd[@]}" workers 2>/dev/null) || true
    missing=""
    for name in "$@"; do
      grep -Eq "^$name +(idle|probing|busy) " <<<"$listed" || missing="$missing $name"
    done
    [ -z "$missing" ] && return 0
    sleep 0.1
  done
  echo "testbed: not connected after 60 s:$missing (see $dir/*.log)" >&2
}

case "$cmd" in
  up) up ;;
  down) down ;;
  status) status ;;
  *) sed -n '2,8p' "$0" >&2; exit 2 ;;
esac
