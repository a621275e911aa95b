#!/usr/bin/env bash
# Sets up and builds r1.cpp if needed (scripts/setup.sh), then runs the whole test suite with ctest.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup.sh"
cd "${R1_BUILD_DIR:-$root/build}"
ctest --output-on-failure -j2 "$@"
