#!/usr/bin/env bash
# Runs every libFuzzer target of fuzz/ for a bounded time under ASan/UBSan (the asan preset's
# build-asan/), starting from the committed seeds and regression inputs, and prints each target's
# executions. Any crash, leak, timeout (10 s per input) or memory blow-up (2 GiB) fails the run;
# libFuzzer leaves the input in build-asan/fuzz/artifacts/<target>/: fix the bug, then commit that
# input under fuzz/regressions/<target>/ (ctest replays it in every build) and add a named test.
#   scripts/fuzz.sh [SECONDS_PER_TARGET=60] [TARGET...]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
seconds="${1:-60}"
shift || true
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=(fuzz_math fuzz_tokenizer fuzz_config fuzz_service)

cd "$root"
cmake --preset asan -DR1_DEPS_DIR="${R1_DEPS_DIR:-$HOME/.cache/r1cpp}" >/dev/null
cmake --build --preset asan >&2

export ASAN_OPTIONS="detect_leaks=1:allocator_may_return_null=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
status=0
for t in "${targets[@]}"; do
  work="build-asan/fuzz/work/$t" art="build-asan/fuzz/artifacts/$t"
  mkdir -p "$work" "$art"
  seeds=("fuzz/corpus/$t")
  [[ -d "fuzz/regressions/$t" ]] && seeds+=("fuzz/regressions/$t")
  log="build-asan/fuzz/$t.log"
  # New inputs go to the work folder (not committed); the seed folders are read only.
  if "build-asan/fuzz/$t" "$work" "${seeds[@]}" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
       -max_len=65536 -print_final_stats=1 -artifact_prefix="$art/" >"$log" 2>&1; then
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1)
    echo "$t: ${execs:-?} executions in ${seconds} s, ${cov:-cov: ?}, no finding"
  else
    status=1
    echo "$t: FINDING (log: $log, input: $(ls -t "$art" | head -1))"
    grep -E "ERROR|finding|SUMMARY" "$log" | head -5
  fi
done
exit $status
