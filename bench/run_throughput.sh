#!/usr/bin/env bash
# Training throughput of the worker's C++ Trainer against Python PyTorch, side by side.
#
# Both sides run on the same LibTorch 1.13.1 shared libraries (Debian's libtorch-dev for
# the worker, python3-torch for Python), with the same threads, model, batch size, data,
# initial weights, shuffles, loss and optimizer (SGD lr 0.01, momentum 0.9). Each run is a
# fresh process that trains a warm-up epoch and a timed epoch; samples/s = training samples
# / (batch assembly + forward + backward + optimizer seconds) of the timed epoch.
# The machine is noisy, so C++ and Python runs alternate: ROUNDS rounds, each running every
# case once on each side (C++ first in odd rounds, Python first in even ones), and the
# table reports medians over the rounds and their ratio.
#
# Environment (defaults in brackets):
#   THREADS [1]             LibTorch threads on both sides (the worker's --threads)
#   ROUNDS [3]              rounds of C++ and Python runs per case
#   CASES ["lenet:32 lenet:128 resnet18:32 resnet18:128"]   model:batch pairs
#   LENET_SAMPLES [5000]    training images per epoch for lenet
#   RESNET18_SAMPLES [512]  training images per epoch for resnet18 (slow on a CPU)
#   BUILD_DIR [build-bench] build folder for bench_train_throughput (Release)
#   JOBS [2]                parallel compile jobs
#   PYTHON [/usr/bin/python3]  the Python whose torch is compared (Debian's python3-torch)
#   DETERMINISTIC [0]       1: both sides ask cuDNN for deterministic algorithms (a GPU run
#                           whose losses should then repeat; no effect on a CPU)
#   PREBUILT [0]            1: install nothing and build nothing; use BUILD_DIR's
#                           bench_train_throughput and topotune-datagen as they are (a GPU
#                           machine's worker-only build: bench/gpu/run_checks.sh)
# On a machine with a CUDA GPU both sides train on it (the Trainer's choice).
# glibc's MALLOC_*_ variables and GLIBC_TUNABLES pass through to both sides, e.g.
#   MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=68719476736 bench/run_throughput.sh
# shows what keeping freed tensor buffers in the heap would do (see bench/RESULTS.md).
# About 10 minutes on 2 cores with the defaults, the build excluded.
set -euo pipefail
cd "$(dirname "$0")/.."

THREADS="${THREADS:-1}"
ROUNDS="${ROUNDS:-3}"
CASES="${CASES:-lenet:32 lenet:128 resnet18:32 resnet18:128}"
LENET_SAMPLES="${LENET_SAMPLES:-5000}"
RESNET18_SAMPLES="${RESNET18_SAMPLES:-512}"
BUILD_DIR="${BUILD_DIR:-build-bench}"
JOBS="${JOBS:-2}"
# The trainer evaluates after each epoch, untimed; one image keeps it out of the CPU time
# that the second metric (samples per CPU second) counts.
VAL_SAMPLES=1
# Debian's interpreter, where python3-torch lives (a python3 earlier on PATH may lack it).
PYTHON="${PYTHON:-/usr/bin/python3}"
PREBUILT="${PREBUILT:-0}"
DETERMINISTIC="${DETERMINISTIC:-0}"

if [ "$PREBUILT" != 1 ]; then
  source scripts/setup.sh
  topotune_install_deps
  "$PYTHON" -c 'import torch' 2>/dev/null || topotune_apt_install python3-torch

  echo "==> building bench_train_throughput in $BUILD_DIR"
  mkdir -p "$BUILD_DIR"
  cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release >"$BUILD_DIR/cmake.log" 2>&1 ||
    { cat "$BUILD_DIR/cmake.log"; exit 1; }
  cmake --build "$BUILD_DIR" -j "$JOBS" --target bench_train_throughput topotune-datagen
fi
BENCH="$BUILD_DIR/bench/bench_train_throughput"

TRAIN_IMAGES=$((LENET_SAMPLES > RESNET18_SAMPLES ? LENET_SAMPLES : RESNET18_SAMPLES))
DATA="$BUILD_DIR/bench-data/shapes-$TRAIN_IMAGES"
if [ ! -f "$DATA/data_batch_1.bin" ]; then
  "$BUILD_DIR/workers/topotune-datagen" --out "$DATA" --train "$TRAIN_IMAGES" --test 200
fi

# The LibTorch each side loads: the same file, or the comparison is not like for like.
cpp_lib=$(ldd "$BENCH" | awk '/libtorch_cpu/ {print $3}')
python_lib=$("$PYTHON" -c '
import torch
for line in open("/proc/self/maps"):
    if "libtorch_cpu" in line:
        print(line.split()[-1]); break')
cpp_lib=$(readlink -f "$cpp_lib")
python_lib=$(readlink -f "$python_lib")
echo
echo "== Training throughput: C++ Trainer vs Python PyTorch =="
echo "date:        $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "machine:     $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
version() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null || echo -; }
echo "packages:    libtorch-dev $(version libtorch-dev), python3-torch $(version python3-torch)" \
  "(torch.__version__ $("$PYTHON" -c 'import torch; print(torch.__version__)'))," \
  "Python $("$PYTHON" -c 'import platform; print(platform.python_version())')"
echo "C++ loads:    $cpp_lib"
echo "Python loads: $python_lib"
if [ "$cpp_lib" != "$python_lib" ]; then
  echo "error: the two sides load different LibTorch libraries" >&2
  exit 1
fi
# LibTorch's matrix products go through libblas.so.3: Debian's alternatives pick the BLAS
# (OpenBLAS once libopenblas0-openmp is installed, as scripts/setup.sh does; else netlib).
blas_lib=$(readlink -f /usr/lib/x86_64-linux-gnu/libblas.so.3 2>/dev/null || echo unknown)
echo "BLAS:        $blas_lib (both sides, when LibTorch is Debian's)"
malloc_env=$(env | grep -E '^(MALLOC_[A-Z_]+_|GLIBC_TUNABLES)=' | tr '\n' ' ' || true)
echo "malloc:      ${malloc_env:-glibc defaults (no MALLOC_*_ or GLIBC_TUNABLES set)}"
echo "settings:    threads $THREADS, $ROUNDS rounds, lenet $LENET_SAMPLES and resnet18" \
  "$RESNET18_SAMPLES training images per epoch, SGD lr 0.01 momentum 0.9"
echo

RESULTS_DIR="$BUILD_DIR/bench-results"
mkdir -p "$RESULTS_DIR"
RESULTS="$RESULTS_DIR/throughput-$(date -u +%Y%m%dT%H%M%SZ).jsonl"

# run_side SIDE MODEL BATCH SAMPLES: one fresh process, its JSON line appended to $RESULTS.
run_side() {
  local side="$1" model="$2" batch="$3" samples="$4" line
  local args=(--data "$DATA" --model "$model" --batch "$batch" --threads "$THREADS"
    --train-samples "$samples" --json)
  if [ "$DETERMINISTIC" = 1 ]; then args+=(--deterministic); fi
  if [ "$side" = cpp ]; then
    line=$("$BENCH" "${args[@]}" --val-samples "$VAL_SAMPLES")
  else
    line=$("$PYTHON" bench/train_throughput.py "${args[@]}")
  fi
  echo "$line" >>"$RESULTS"
  "$PYTHON" -c 'import json, sys; r = json.loads(sys.argv[1]); print("  %-6s %8.1f samples/s  (data %.1f%%)" % ("C++" if r["impl"] == "cpp" else "Python", r["samples_per_s"], 100 * r["data_share"]))' "$line"
}

start=$(date +%s)
for round in $(seq 1 "$ROUNDS"); do
  for case in $CASES; do
    model="${case%%:*}"
    batch="${case##*:}"
    samples="$LENET_SAMPLES"
    [ "$model" = resnet18 ] && samples="$RESNET18_SAMPLES"
    echo "round $round/$ROUNDS: $model, batch $batch, $samples images, $THREADS thread(s)"
    if [ $((round % 2)) -eq 1 ]; then
      run_side cpp "$model" "$batch" "$samples"
      run_side python "$model" "$batch" "$samples"
    else
      run_side python "$model" "$batch" "$samples"
      run_side cpp "$model" "$batch" "$samples"
    fi
  done
done

echo
echo "== Results ($(($(date +%s) - start)) s; raw runs in $RESULTS) =="
cat <<'TEXT'
samples/s: training samples / (data + forward + backward + optimizer seconds) of the timed
epoch, median over the rounds; ratio C++/Python: of the medians (> 1: the worker trains
faster). Ratio per CPU second: the same with the process's CPU seconds of the timed epoch,
which leaves out time spent waiting for a core (other processes on the machine). Data share:
batch assembly, of the C++ compute time. Same loss: both sides trained the same weights on
the same batches (epoch losses agree to 1e-4). Second table: the ratio of each round's pair
of runs, the ratio of median step times, CPU seconds per wall second (~threads when the
machine was quiet), and the split of the C++ and Python epochs.
TEXT
echo
"$PYTHON" bench/summarize_throughput.py "$RESULTS"
