#!/usr/bin/env bash
# GPU check, for the device machine (an H200 with torch 2.11.0+cu130 for python3, CMake and ninja,
# no Debian registry). Builds r1 against the image's torch with CUDA on, using the Debian packages
# that scripts/device-deps.sh put in .device-deps/ (carried along, unpacked here into a private
# prefix), runs the policy, rollout, trainer and distributed tests, then a CUDA generation and a
# short CUDA run of the demo. Sized for ~8 minutes of device time.
#
#   here:   bash scripts/device-deps.sh
#   device: bash scripts/device-check.sh          (device tool: carry [".device-deps"]; log in $OUT)
#
# R1_DEVICE_CHECK_GPU=0 stops after the CPU tests (how the script itself is tested on a machine
# without a GPU, inside a sandbox that hides the system's copies of those packages).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${OUT:-/tmp/r1-device-check}"
mkdir -p "$out"
exec > >(tee "$out/device-check.log") 2>&1
log() { printf '[device-check %(%H:%M:%S)T] %s\n' -1 "$*"; }
build="${R1_BUILD_DIR:-$root/build-device}"
gpu="${R1_DEVICE_CHECK_GPU:-1}"

# 1. Build dependencies: the carried .deb files, unpacked into a prefix (no root install, no registry).
cmake_extra=()
if compgen -G "$root/.device-deps/*.deb" >/dev/null; then
  prefix="$root/.device-deps/root"
  rm -rf "$prefix" && mkdir -p "$prefix"
  for deb in "$root"/.device-deps/*.deb; do
    if command -v dpkg-deb >/dev/null; then
      dpkg-deb -x "$deb" "$prefix"
    else  # a .deb is an ar archive holding data.tar.*
      tmp="$(mktemp -d)" && (cd "$tmp" && ar x "$deb" && tar xf data.tar.* -C "$prefix") && rm -rf "$tmp"
    fi
  done
  libdir="$prefix/usr/lib/x86_64-linux-gnu"
  cmake_extra+=(-DCMAKE_PREFIX_PATH="$prefix/usr" -DCMAKE_LIBRARY_PATH="$libdir"
                -DCMAKE_CXX_FLAGS="-isystem $prefix/usr/include" -DCMAKE_BUILD_RPATH="$libdir")
  export LD_LIBRARY_PATH="$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  log "unpacked $(ls "$root"/.device-deps/*.deb | wc -l) packages into $prefix"
else
  log "no .device-deps/*.deb: using the system's packages"
fi

# 2. Build against the image's torch.
torch_dir="${R1_TORCH_DIR:-$(python3 -c 'import torch, os; print(os.path.dirname(torch.__file__))')}"
log "torch at $torch_dir; $(nproc) cores"
if [[ "$gpu" == 1 ]]; then nvidia-smi -L; fi
t0=$SECONDS
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DR1_TORCH_DIR="$torch_dir" -DR1_CUDA=ON \
  "${cmake_extra[@]}" >"$out/cmake.log" 2>&1 || { cat "$out/cmake.log"; exit 1; }
cmake --build "$build" -j "$(nproc)" --target r1 test_policy test_rollout test_rl test_train test_distributed
log "built in $((SECONDS - t0)) s"

# 3. Tests (CPU paths; the distributed ones over Gloo on loopback).
(cd "$build" && ctest --output-on-failure -R 'test_policy|test_rollout|test_rl|test_train|test_distributed')
log "tests passed"
[[ "$gpu" == 1 ]] || { log "R1_DEVICE_CHECK_GPU=0: skipping the CUDA runs"; exit 0; }

# 4. CUDA: generation in bf16 and a short demo run (GRPO on the GPU) with its curves.
cd "$root"
"$build/r1" generate --device cuda --dtype bfloat16 --prompt "Compute 47 + 385." --max-new-tokens 32 \
  --model models/r1zero-tiny
"$build/r1" train configs/demo.toml --quiet --run-dir "$out/demo-cuda" --set model.device=cuda \
  --set train.steps=20 --set eval.every=10
"$build/r1" curves "$out/demo-cuda" --metric reward/mean --metric time/rollout --metric time/train || true
log "done in $((SECONDS - t0)) s"
