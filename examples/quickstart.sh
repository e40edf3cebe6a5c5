#!/usr/bin/env bash
# Installs the dependencies, builds, starts topotuned on a fresh SQLite file and two local
# workers, submits examples/jobs/quickstart.json, follows it, prints the best-config
# report, and stops what it started. Everything lands in run/quickstart/. The tokens it
# makes (an admin secret, a user and a worker token) stay in run/quickstart/ with mode 600.
# JOB_SPEC=FILE submits another job spec instead (e.g. examples/jobs/budget-auto.json).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
topotune_install_deps
mkdir -p build
topotune_build build -- topotuned topotune-worker topotune topotune-datagen

RUN=run/quickstart
BIN=build
rm -rf "$RUN"
mkdir -p "$RUN"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

echo "==> generating the shapes dataset (CIFAR-10 binary format) in $RUN/data/shapes"
"$BIN/workers/topotune-datagen" --out "$RUN/data/shapes" --train 5000 --test 1000 --seed 1

echo "==> starting topotuned (database $RUN/topotune.db)"
# An admin secret of our own: 32 random bytes as hex, readable by this user only.
umask 077
od -An -N32 -tx1 /dev/urandom | tr -d ' \n' >"$RUN/admin.token"
"$BIN/api/topotuned" --db "$RUN/topotune.db" --http 127.0.0.1:0 --workers 127.0.0.1:0 \
  --ports-file "$RUN/ports.json" --admin-token-file "$RUN/admin.token" 2>"$RUN/topotuned.log" &
pids+=($!)
for _ in $(seq 100); do [ -s "$RUN/ports.json" ] && break; sleep 0.1; done
[ -s "$RUN/ports.json" ] || { cat "$RUN/topotuned.log"; echo "topotuned did not start"; exit 1; }
HTTP_PORT=$(sed -n 's/.*"http": *\([0-9]*\).*/\1/p' "$RUN/ports.json")
WORKER_PORT=$(sed -n 's/.*"workers": *\([0-9]*\).*/\1/p' "$RUN/ports.json")
export TOPOTUNE_SERVER="http://127.0.0.1:$HTTP_PORT"

# The admin issues a user token (for the CLI) and a worker token (for the workers).
TOPOTUNE_TOKEN=$(cat "$RUN/admin.token") "$BIN/api/topotune" token create --role user \
  --name quickstart >"$RUN/user.token" 2>>"$RUN/cli.log" || { cat "$RUN/cli.log"; exit 1; }
TOPOTUNE_TOKEN=$(cat "$RUN/admin.token") "$BIN/api/topotune" token create --role worker \
  --name local-workers >"$RUN/worker.token" 2>>"$RUN/cli.log" || { cat "$RUN/cli.log"; exit 1; }
export TOPOTUNE_TOKEN
TOPOTUNE_TOKEN=$(cat "$RUN/user.token")

# One thread per worker: two workers share this machine's cores.
for name in local-1 local-2; do
  "$BIN/workers/topotune-worker" --controller "127.0.0.1:$WORKER_PORT" --name "$name" \
    --data-root "$RUN" --checkpoint-dir "$RUN/checkpoints" --threads 1 \
    --token-file "$RUN/worker.token" 2>"$RUN/$name.log" &
  pids+=($!)
done
sleep 1
"$BIN/api/topotune" workers

JOB_SPEC="${JOB_SPEC:-examples/jobs/quickstart.json}"
echo "==> submitting $JOB_SPEC"
out=$("$BIN/api/topotune" submit "$JOB_SPEC")
echo "$out"
JOB=$(echo "$out" | sed -n 's/submitted job \([0-9]*\).*/\1/p')
"$BIN/api/topotune" status "$JOB" --watch
echo
"$BIN/api/topotune" report "$JOB"
echo
echo "The database is $RUN/topotune.db; 'build/api/topotune report $JOB --db $RUN/topotune.db'"
echo "rebuilds this report from the file alone. Logs are in $RUN/."
