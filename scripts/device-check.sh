#!/usr/bin/env bash
# GPU check, for the device machine (an H200 with torch 2.11.0+cu130, CMake and ninja, no Debian
# registry): builds r1 against the image's torch with CUDA on, then runs the policy, rollout,
# trainer and distributed tests and a short CUDA generation. Sized for a few minutes of device time.
#   bash scripts/device-check.sh        (from the repository root; writes a summary to $OUT if set)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
torch_dir="$(python3 -c 'import torch, os; print(os.path.dirname(torch.__file__))')"
build="${R1_BUILD_DIR:-$root/build-device}"
echo "[device-check] torch at $torch_dir"; nvidia-smi -L || true
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DR1_TORCH_DIR="$torch_dir" -DR1_CUDA=ON
cmake --build "$build" -j "$(nproc)" --target r1 test_policy test_rollout test_rl test_train test_distributed
cd "$build" && ctest --output-on-failure -R 'test_policy|test_rollout|test_rl|test_train|test_distributed'
cd "$root"
"$build/r1" generate --device cuda --dtype bfloat16 --prompt "Compute 47 + 385." --max-new-tokens 32 \
  --model models/r1zero-tiny
"$build/r1" train configs/demo.toml --quiet --run-dir "${OUT:-/tmp}/demo-cuda" --set model.device=cuda \
  --set train.steps=10 --set eval.every=5
