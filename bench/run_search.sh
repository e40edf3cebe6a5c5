#!/usr/bin/env bash
# Search efficiency and suggestion latency: Topotune's algorithms through the real
# controller and replay workers vs grid search vs Optuna, on every replay table in
# bench/replay/*.csv; then the samplers' suggestion latency beside Optuna's TPE.
# See bench/README.md ("Search") and bench/search_benchmark.py for the definitions.
#
# Environment (defaults in brackets):
#   SEEDS [100]       runs per algorithm and per Optuna setup (at least 20)
#   GRID_SEEDS [5]    runs of the product's grid algorithm (its order is fixed; seeds only
#                     change which recorded curve each configuration replays)
#   BUDGET [60]       trials per run
#   TARGET []         target validation accuracy; empty: each table's "# bench_target=" line
#   LANES [4]         controllers (one replay worker each) and Optuna processes at once;
#                     a job is latency-bound (mostly idle CPU), so 4 lanes suit 2 cores
#   TABLES [bench/replay/*.csv]
#   BUILD_DIR [build] build folder (Release)
#   OUT_DIR [$BUILD_DIR/bench-results]  JSON results
#   EXTRA_ARGS []     more flags for search_benchmark.py (e.g. "--min-epochs 4 --rungs 2")
# About 2 minutes on 2 cores per table with the defaults, the build excluded.
set -euo pipefail
cd "$(dirname "$0")/.."

SEEDS="${SEEDS:-100}"
GRID_SEEDS="${GRID_SEEDS:-5}"
BUDGET="${BUDGET:-60}"
TARGET="${TARGET:-}"
LANES="${LANES:-4}"
BUILD_DIR="${BUILD_DIR:-build}"
OUT_DIR="${OUT_DIR:-$BUILD_DIR/bench-results}"
EXTRA_ARGS="${EXTRA_ARGS:-}"
# Debian's interpreter, where python3-optuna lives (a python3 earlier on PATH may lack it).
PYTHON=/usr/bin/python3

source scripts/setup.sh
topotune_install_deps
"$PYTHON" -c 'import optuna' 2>/dev/null || topotune_apt_install python3-optuna
topotune_build "$BUILD_DIR" -- topotuned topotune-worker bench_sampler_latency
mkdir -p "$OUT_DIR"

echo
echo "== Search efficiency on replay tables =="
echo "date:    $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo "optuna:  $("$PYTHON" -c 'import optuna; print(optuna.__version__)')" \
  "(python3-optuna $(dpkg-query -W -f='${Version}' python3-optuna))"
if [ -n "${TABLES:-}" ]; then
  read -r -a tables <<<"$TABLES"
else
  tables=(bench/replay/*.csv)
fi
[ -e "${tables[0]}" ] || { echo "no replay tables in bench/replay/"; exit 1; }
for table in "${tables[@]}"; do
  name=$(basename "$table" .csv)
  echo
  echo "-- $table"
  # shellcheck disable=SC2086
  "$PYTHON" bench/search_benchmark.py --table "$table" ${TARGET:+--target "$TARGET"} --seeds "$SEEDS" \
    --grid-seeds "$GRID_SEEDS" --budget "$BUDGET" --lanes "$LANES" --quiet \
    --topotuned "$BUILD_DIR/api/topotuned" --worker "$BUILD_DIR/workers/topotune-worker" \
    --json "$OUT_DIR/search-$name.json" $EXTRA_ARGS
done

echo
echo "== Suggestion latency =="
"$BUILD_DIR/bench/bench_sampler_latency" --json >"$OUT_DIR/latency-ours.jsonl"
"$PYTHON" bench/optuna_latency.py --ours "$OUT_DIR/latency-ours.jsonl" \
  --json "$OUT_DIR/latency.jsonl"
echo
echo "JSON results in $OUT_DIR/"
