#!/usr/bin/env bash
# Builds the five libFuzzer harnesses with clang (build-fuzz/, TOPOTUNE_FUZZ=ON, ASan and
# UBSan, no LibTorch) and runs each for SECONDS (default 60) on a copy of its seed corpus.
# Crash inputs go to build-fuzz/artifacts/<harness>/; exits 1 if any harness crashed, after
# running them all. A crash input belongs in tests/fuzz/regressions/<harness>/, with a fix.
# Usage: tests/fuzz/run.sh [SECONDS]   (NICE=10 runs the fuzzers under nice)
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds="${1:-60}"
source scripts/setup.sh
topotune_install_deps
command -v clang++ >/dev/null && [ -n "$(ls /usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a \
  2>/dev/null)" ] || topotune_apt_install clang libfuzzer-14-dev

harnesses=(job_spec_fuzzer frame_fuzzer rest_router_fuzzer topology_fuzzer planner_input_fuzzer)
CC=clang CXX=clang++ topotune_build build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DTOPOTUNE_FUZZ=ON -DTOPOTUNE_WITH_TORCH=OFF -DTOPOTUNE_BUILD_TESTS=OFF -- "${harnesses[@]}"

# max_len per harness: a job spec is a small document; frames and requests get 64 KiB; the
# planner's two files 4 KiB together, where the harness cuts them (planning grows with the
# table: see tests/fuzz/planner_input_fuzzer.cc).
declare -A max_len=([job_spec_fuzzer]=16384 [frame_fuzzer]=65536 [rest_router_fuzzer]=65536
  [topology_fuzzer]=16384 [planner_input_fuzzer]=4096)
failed=()
for h in "${harnesses[@]}"; do
  work="build-fuzz/corpus/$h"
  artifacts="build-fuzz/artifacts/$h"
  rm -rf "$work"
  mkdir -p "$work" "$artifacts"
  cp tests/fuzz/corpus/"$h"/* "$work"/  # the committed corpus stays as it is
  log="build-fuzz/$h.log"
  echo "==> fuzzing $h for ${seconds}s (log: $log)"
  rc=0
  dict=()  # a harness's dictionary, where it has one: tests/fuzz/<harness>.dict
  [ -f tests/fuzz/"$h".dict ] && dict=(-dict=tests/fuzz/"$h".dict)
  nice -n "${NICE:-0}" "build-fuzz/tests/fuzz/$h" "$work" tests/fuzz/regressions/"$h" \
    -max_total_time="$seconds" -rss_limit_mb=2048 -max_len="${max_len[$h]}" -timeout=10 \
    -print_final_stats=1 -artifact_prefix="$artifacts/" "${dict[@]}" >"$log" 2>&1 || rc=$?
  # The last status line ("#N DONE cov: ... ft: ... corp: ...") and the final stats.
  grep -E '^#[0-9]+' "$log" | tail -1 || true
  grep -E '^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)' "$log" || true
  echo "    corpus: $(find "$work" -type f | wc -l) inputs"
  if [ "$rc" -ne 0 ]; then
    echo "!!> $h failed (exit $rc); the end of its log:"
    tail -40 "$log"
    ls "$artifacts"/* 2>/dev/null | sed 's/^/!!> artifact: /' || true
    failed+=("$h")
  fi
done
if [ "${#failed[@]}" -gt 0 ]; then
  echo "fuzzing found crashes in: ${failed[*]} (artifacts in build-fuzz/artifacts/)"
  exit 1
fi
echo "==> no crash in ${#harnesses[@]} harnesses"
