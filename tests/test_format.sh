#!/usr/bin/env bash
# Every C++ file in the repository is formatted by .clang-format (clang-format 14, Debian 12).
# Fix with: git ls-files '*.cpp' '*.hpp' '*.h' | xargs clang-format -i
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
git ls-files '*.cpp' '*.hpp' '*.h' | xargs clang-format --dry-run --Werror
echo "every C++ file is clang-formatted"
