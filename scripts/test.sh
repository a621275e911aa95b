#!/usr/bin/env bash
# Sets up and builds r1.cpp if needed (scripts/setup.sh), runs the whole test suite with ctest, then
# the LibTorch-free suites (tokenizer, rewards) again under AddressSanitizer and UBSan (the "asan"
# preset of CMakePresets.json, built with clang in build-asan/).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup.sh"
(cd "${R1_BUILD_DIR:-$root/build}" && ctest --output-on-failure -j2 "$@")

cd "$root"
[[ -f build-asan/build.ninja ]] || cmake --preset asan -DR1_DEPS_DIR="${R1_DEPS_DIR:-$HOME/.cache/r1cpp}" >/dev/null
cmake --build --preset asan >&2
ctest --preset asan
