#!/usr/bin/env bash
# The worker's GPU checks, in one command, for a machine with a CUDA GPU, a CUDA PyTorch
# and no network (the device tool's machine). Each stage is bounded so that all of them end
# before DEADLINE_S; each writes a line to $OUT/summary.txt, and a stage that fails says so
# while the next ones still run.
#
#   build       unpacks .gpukit (bench/gpu/make_kit.sh) and builds the worker side
#               (TOPOTUNE_WORKER_ONLY) against the LibTorch inside the PyTorch
#               (torch.utils.cmake_prefix_path, its C++ ABI) into build-gpu/
#   probe       topotune-worker probe of resnet18 and resnet50 on the generated 3x32x32
#               set, up to batch sizes no GPU holds (the out-of-memory path runs too)
#   throughput  bench/run_throughput.sh with PREBUILT=1 and that PyTorch's python3: the C++
#               Trainer against Python on the GPU, LeNet and ResNet-18 at batch 32 and 128
#   replay      topotune-worker record-replay of resnet18 (6 batch sizes x 8 learning rates
#               x 2 optimizers x 2 seeds, up to 6 epochs of 2,000 images), 4 shards sharing
#               the GPU, merged into one table; cut at the deadline if need be
#
# DETERMINISTIC=1 passes through to bench/run_throughput.sh: both sides ask cuDNN for
# deterministic algorithms, to see whether the losses then repeat.
#
# $OUT receives at most 7 files (the device tool returns 8): summary.txt, probe-*.json,
# throughput.txt, throughput.jsonl, resnet18_shapes_gpu.csv and logs.tgz (every log).
#
# From this machine, after bench/gpu/make_kit.sh:
#   run(command="bash bench/gpu/run_checks.sh", carry=[".gpukit"], timeout_s=590)
# A dry run on a CPU machine with Debian's LibTorch (checks the script, not a GPU):
#   PYTHON=/usr/bin/python3 NO_KIT=1 PROBE_BATCHES=2,4 ROUNDS=1 CASES=lenet:128 \
#     REPLAY_BATCHES=32 REPLAY_EPOCHS=1 REPLAY_MAX_TRAIN=64 bash bench/gpu/run_checks.sh
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1

OUT="${OUT:-$PWD/build-gpu/out}"
STAGES="${STAGES:-build probe throughput replay}"
PYTHON="${PYTHON:-python3}"
DEADLINE_S="${DEADLINE_S:-560}"  # the last stage ends by then (seconds from start)
PROBE_RESNET18="${PROBE_BATCHES:-32,128,512,2048,8192,32768,131072,524288}"
PROBE_RESNET50="${PROBE_BATCHES:-32,128,512,2048,8192,32768,131072}"
REPLAY_BATCHES="${REPLAY_BATCHES:-32,64,128,256,512,1024}"
REPLAY_EPOCHS="${REPLAY_EPOCHS:-6}"
REPLAY_MAX_TRAIN="${REPLAY_MAX_TRAIN:-2000}"
export ROUNDS="${ROUNDS:-2}"
export CASES="${CASES:-lenet:32 lenet:128 resnet18:32 resnet18:128}"
BUILD=build-gpu
LOGS="$BUILD/logs"
DATA="$BUILD/data/shapes"
WORKER="$BUILD/workers/topotune-worker"
mkdir -p "$OUT" "$LOGS"
started=$(date +%s)
elapsed() { echo $(($(date +%s) - started)); }
# left [CAP]: seconds until the deadline, at most CAP.
left() {
  local l=$((DEADLINE_S - $(elapsed)))
  [ $# -gt 0 ] && [ "$1" -lt "$l" ] && l=$1
  echo $((l > 0 ? l : 1))
}
say() { echo "[$(elapsed) s] $*" | tee -a "$OUT/summary.txt"; }
has_stage() { [[ " $STAGES " == *" $1 "* ]]; }
pack_logs() { tar -czf "$OUT/logs.tgz" -C "$BUILD" logs 2>/dev/null; }
trap pack_logs EXIT

say "stages: $STAGES; deadline ${DEADLINE_S} s"
say "machine: $(nproc) cores; $(nvidia-smi --query-gpu=name,memory.total,driver_version \
  --format=csv,noheader 2>/dev/null || echo 'no nvidia-smi')"
say "python: $("$PYTHON" -c 'import torch; print("torch", torch.__version__, "cuda",
  torch.version.cuda, "available", torch.cuda.is_available(), "cxx11 abi",
  torch.compiled_with_cxx11_abi())' 2>&1 | tail -1)"
torch_dir=$("$PYTHON" -c 'import os, torch; print(os.path.dirname(torch.__file__))')
# The C++ programs load the CUDA libraries of the pip packages through libtorch_cuda's
# RPATH; Python preloads them. Make both sides find the same ones.
site=$(dirname "$torch_dir")
nvidia_libs=$(ls -d "$site"/nvidia/*/lib "$site"/nvidia/*/*/lib 2>/dev/null | tr '\n' ':')
export LD_LIBRARY_PATH="$torch_dir/lib:${nvidia_libs}${LD_LIBRARY_PATH:-}"

# unpack_deb DEB DIR: dpkg -x, or the same in Python where the image has no dpkg (a .deb is
# an ar archive holding data.tar.*).
unpack_deb() {
  if command -v dpkg >/dev/null; then
    dpkg -x "$1" "$2"
    return
  fi
  "$PYTHON" - "$1" "$2" <<'PY'
import io, sys, tarfile
raw = open(sys.argv[1], "rb").read()
assert raw[:8] == b"!<arch>\n", sys.argv[1] + " is not an ar archive"
pos = 8
while pos + 60 <= len(raw):
    name, size = raw[pos:pos + 16].decode().strip().rstrip("/"), int(raw[pos + 48:pos + 58])
    if name.startswith("data.tar"):
        member = raw[pos + 60:pos + 60 + size]
        tarfile.open(fileobj=io.BytesIO(member)).extractall(sys.argv[2])
        break
    pos += 60 + size + (size % 2)
else:
    sys.exit("no data.tar in " + sys.argv[1])
PY
}

build() {
  local prefix="" kit="$PWD/$BUILD/kit" include=/usr/include
  if [ "${NO_KIT:-0}" != 1 ]; then
    if ! ls .gpukit/*.deb >/dev/null 2>&1; then
      say "build: FAILED: no .gpukit/*.deb (run bench/gpu/make_kit.sh here, carry .gpukit)"
      return 1
    fi
    mkdir -p "$kit"
    for deb in .gpukit/*.deb; do unpack_deb "$deb" "$kit" || return 1; done
    prefix=";$kit/usr"
    include="$kit/usr/include"
  fi
  local nvcc abi zlib generator=() cuda_flags=()
  abi=$("$PYTHON" -c 'import torch; print(int(torch.compiled_with_cxx11_abi()))')
  zlib=$(ldconfig -p | awk '/libz\.so\.1 .*x86-64/ {print $NF; exit}')
  command -v ninja >/dev/null && generator=(-G Ninja)
  nvcc=$(command -v nvcc || ls /usr/local/cuda/bin/nvcc 2>/dev/null || true)
  if [ -n "$nvcc" ]; then
    nvcc=$(readlink -f "$nvcc")
    local cuda_root
    cuda_root=$(dirname "$(dirname "$nvcc")")
    ls "$cuda_root/include/cuda_runtime_api.h" >/dev/null || say "build: no cuda_runtime_api.h"
    cuda_flags=(-DCMAKE_CUDA_COMPILER="$nvcc" -DCUDAToolkit_ROOT="$cuda_root"
      -DTORCH_CUDA_ARCH_LIST=9.0 -DCMAKE_PROJECT_INCLUDE="$PWD/bench/gpu/nvtx_fix.cmake")
  fi
  cmake -S . -B "$BUILD" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release \
    -DTOPOTUNE_WORKER_ONLY=ON -DTOPOTUNE_DP_PROBE=OFF -DCMAKE_PREFIX_PATH="$("$PYTHON" -c \
    'import torch; print(torch.utils.cmake_prefix_path)')$prefix" \
    -DZLIB_INCLUDE_DIR="$include" \
    -DZLIB_LIBRARY="$zlib" -DCMAKE_CXX_FLAGS="-D_GLIBCXX_USE_CXX11_ABI=${abi:-1}" \
    -DPYTHON_EXECUTABLE="$(command -v "$PYTHON")" -DCMAKE_DISABLE_FIND_PACKAGE_MKL=TRUE \
    "${cuda_flags[@]}" >"$LOGS/cmake.log" 2>&1 || return 1
  timeout "$(left 300)" cmake --build "$BUILD" -j "$(nproc)" --target topotune-worker \
    topotune-datagen bench_train_throughput >"$LOGS/build.log" 2>&1
}

if has_stage build || [ ! -x "$WORKER" ]; then
  if build; then
    cuda_libs=$(ldd "$WORKER" | grep -c 'libtorch_cuda\|libc10_cuda')
    cuda_api=$(nm -C "$WORKER" 2>/dev/null | grep -c 'cudaGetDeviceProperties')
    say "build: ok; $cuda_libs CUDA LibTorch libraries linked; CUDA runtime API used: $cuda_api"
    if [ "$cuda_libs" -eq 0 ] &&
      [ "$("$PYTHON" -c 'import torch; print(torch.cuda.is_available())')" = True ]; then
      say "build: FAILED: PyTorch sees a GPU but the worker links no CUDA LibTorch library"
      exit 1
    fi
  else
    say "build: FAILED (logs.tgz: logs/cmake.log, logs/build.log):"
    tail -25 "$LOGS/cmake.log" "$LOGS/build.log" 2>/dev/null | tee -a "$OUT/summary.txt"
    exit 1
  fi
fi
if [ ! -f "$DATA/data_batch_1.bin" ] &&
  ! "$BUILD/workers/topotune-datagen" --out "$DATA" --train 5000 --test 1000 \
    >"$LOGS/datagen.log" 2>&1; then
  say "datagen: FAILED (logs/datagen.log)"
  exit 1
fi

if has_stage probe; then
  for spec in "resnet18 $PROBE_RESNET18" "resnet50 $PROBE_RESNET50"; do
    set -- $spec
    if timeout "$(left 100)" "$WORKER" probe --data "$DATA" --model "$1" --batch-sizes "$2" \
      --steps 3 --threads 4 >"$OUT/probe-$1.json" 2>"$LOGS/probe-$1.log"; then
      say "probe $1: $("$PYTHON" -c '
import json, sys
p = json.load(open(sys.argv[1]))
print(p["device"]["kind"], p["device"]["name"], "| max batch", p["probe"]["max_batch_size"],
      "|", ", ".join("%d: %s" % (b["batch_size"], "%.1f ms, %.2f GB" % (
          b["step_ms"], b["peak_memory_bytes"] / 1e9) if b["fits"] else "no")
          for b in p["probe"]["batches"]))' "$OUT/probe-$1.json")"
    else
      say "probe $1: FAILED or cut short (exit $?; logs/probe-$1.log)"
    fi
  done
fi

if has_stage throughput; then
  if ! grep -q PREBUILT bench/run_throughput.sh; then
    say "throughput: SKIPPED: bench/run_throughput.sh has no PREBUILT mode"
  else
    rm -f "$BUILD"/bench-results/throughput-*.jsonl
    PREBUILT=1 BUILD_DIR="$BUILD" PYTHON="$PYTHON" LENET_SAMPLES=5000 RESNET18_SAMPLES=5000 \
      timeout "$(left 200)" bench/run_throughput.sh >"$OUT/throughput.txt" 2>&1
    status=$?
    cat "$BUILD"/bench-results/throughput-*.jsonl >"$OUT/throughput.jsonl" 2>/dev/null
    if [ "$status" -eq 0 ]; then
      say "throughput: ok"
      grep '^| ' "$OUT/throughput.txt" | head -6 | tee -a "$OUT/summary.txt"
    else
      say "throughput: FAILED or cut short (exit $status; throughput.txt, throughput.jsonl)"
    fi
  fi
fi

if has_stage replay; then
  # Four processes share the GPU, so epoch times include their contention; the table's
  # header says so. Each shard flushes its rows after every run: a shard cut at the
  # deadline keeps the runs it finished.
  shards=4
  budget=$(left)
  budget=$((budget > 15 ? budget - 10 : 5))
  pids=()
  for i in $(seq 0 $((shards - 1))); do
    timeout "$budget" "$WORKER" record-replay --out "$LOGS/replay-shard$i.csv" \
      --data "$DATA" --model resnet18 --batch-sizes "$REPLAY_BATCHES" \
      --lr-range 0.0001:1:8 --optimizers sgd,adam --seeds 0,1 --epochs "$REPLAY_EPOCHS" \
      --max-train "$REPLAY_MAX_TRAIN" --max-val 1000 --threads 2 --shard "$i/$shards" \
      2>"$LOGS/replay-shard$i.log" &
    pids+=($!)
  done
  cut_short=0
  for pid in "${pids[@]}"; do
    wait "$pid" || cut_short=$((cut_short + 1))
  done
  table="$OUT/resnet18_shapes_gpu.csv"
  first=$(ls "$LOGS"/replay-shard*.csv 2>/dev/null | head -1)
  if [ -z "$first" ]; then
    say "replay: FAILED: no shard wrote a table (logs/replay-shard*.log)"
  else
    {
      grep '^#' "$first" | grep -v '^# shard'
      echo "# recorded=$(date -u '+%Y-%m-%d %H:%M') UTC as $shards shards side by side on one" \
        "GPU (epoch times include their contention), each bounded by $budget s"
      echo "# complete=$([ "$cut_short" -eq 0 ] && echo true || echo "false ($cut_short of" \
        "$shards shards cut short or failed)")"
      grep -m1 '^batch_size' "$first"
      for f in "$LOGS"/replay-shard*.csv; do grep -v '^#\|^batch_size' "$f"; done
    } >"$table"
    say "replay: $(grep -vc '^#\|^batch_size' "$table") rows in $(basename "$table");" \
      "$cut_short of $shards shards cut short or failed"
  fi
fi
say "done"
