#!/usr/bin/env bash
# Sets up and builds r1.cpp if needed (scripts/setup.sh), runs the whole test suite with ctest, then
# the LibTorch-free suites (tokenizer, rewards, TensorBoard files) again under AddressSanitizer and
# UBSan (the "asan" preset of CMakePresets.json, built with clang in build-asan/) with the fuzz
# corpora, and runs each libFuzzer target for R1_FUZZ_SECONDS (default 60; 0 skips fuzzing) with
# scripts/fuzz.sh.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup.sh"
(cd "${R1_BUILD_DIR:-$root/build}" && ctest --output-on-failure -j2 "$@")

cd "$root"
cmake --preset asan -DR1_DEPS_DIR="${R1_DEPS_DIR:-$HOME/.cache/r1cpp}" >/dev/null
cmake --build --preset asan >&2
ctest --preset asan
fuzz_seconds="${R1_FUZZ_SECONDS:-60}"
if [[ "$fuzz_seconds" != 0 ]]; then bash "$root/scripts/fuzz.sh" "$fuzz_seconds"; fi
