#!/usr/bin/env bash
# The GPU probe, for the device machine (an H200 with torch 2.11.0+cu130 for python3, CMake and
# ninja, no Debian registry): about 5 minutes of device time, one JSON report, $OUT/probe.json.
# CPU suites stay out of it (CI runs them). It records:
#   sdpa_*            the SDPA kernel of each attention call shape (training prompt and completion
#                     passes, prefill, decode), bf16 and float32, for a Qwen2.5-0.5B shape
#   agreement_float32 CUDA vs CPU on the policy fixtures: logits, gradient of a training loss
#   generation_bf16   tokens/s and peak memory of a Qwen2.5-0.5B-shaped random model at batch 64 and
#                     on the long-tailed workload (continuous vs static batches)
#   publish_seconds   copying its weights to a sampler model on the device
#   grpo_step         two bf16-mixed GRPO steps of that model (r1 train): seconds and memory per
#                     step, and whether the weights moved
#
#   here:   bash scripts/device-deps.sh
#   device: bash scripts/device-check.sh          (device tool: carry [".device-deps"]; results in $OUT)
#
# R1_DEVICE=cpu R1_PROBE_SMALL=1 R1_PROBE_CONFIG=small-config.json runs the same probe on CPU with
# small workloads (how the script is tested without a GPU: tests/test_device_probe.sh).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${OUT:-/tmp/r1-device-check}"
mkdir -p "$out"
exec > >(tee "$out/device-check.log") 2>&1
log() { printf '[device-check %(%H:%M:%S)T] %s\n' -1 "$*"; }
build="${R1_BUILD_DIR:-$root/build-device}"
device="${R1_DEVICE:-cuda}"
small=()
[[ "${R1_PROBE_SMALL:-0}" == 1 ]] && small=(--small)

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
fi

# 2. Build r1 and the probe against the image's torch (or reuse an existing build: R1_BUILD_DIR).
t0=$SECONDS
if [[ ! -f "$build/build.ninja" && ! -f "$build/Makefile" ]]; then
  torch_dir="${R1_TORCH_DIR:-$(python3 -c 'import torch, os; print(os.path.dirname(torch.__file__))')}"
  log "torch at $torch_dir; $(nproc) cores"
  cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DR1_TORCH_DIR="$torch_dir" \
    "${cmake_extra[@]}" >"$out/cmake.log" 2>&1 || { cat "$out/cmake.log"; exit 1; }
fi
cmake --build "$build" -j "$(nproc)" --target r1 device_probe
log "built in $((SECONDS - t0)) s"
[[ "$device" == cuda ]] && nvidia-smi -L

# 3. The probe: kernels, agreement, generation, publish; the random model saved for step 4.
model="$out/qwen2.5-0.5b-random"
rm -rf "$model"
"$build/bench/device_probe" --device "$device" --fixtures "$root/tests/fixtures/models" \
  --config "${R1_PROBE_CONFIG:-$root/bench/qwen2.5-0.5b.json}" --out "$out/probe-core.json" --save "$model" "${small[@]}"
log "probe done at $((SECONDS - t0)) s"

# 4. Two bf16-mixed GRPO steps of that model on the demo's prompts (the demo tokenizer: ids it lacks
# are banned). A random model earns no task reward, so the reward is the length checker's, and the
# stop string "e" makes lengths vary: the groups have a signal, and the weights must move.
cp "$root/models/r1zero-tiny/tokenizer.json" "$model/"
run="$out/grpo-run"
rm -rf "$run"
new=128 threads=16
[[ ${#small[@]} -gt 0 ]] && new=16 threads=2
cat >"$out/grpo.toml" <<TOML
[run]
name = "device-probe"
seed = 1
[model]
path = "$model"
device = "$device"
dtype = "bfloat16"
threads = $threads
[data]
path = "$root/data/arith/rl_train.jsonl"
prompt_template = "User: {question} Assistant:"
[sampling]
max_new_tokens = $new
stop = ["e"]
[rollout]
workers = 1
group_size = 8
prompts_per_step = 8
prompts_per_batch = 8
[[rewards.checkers]]
checker = "length"
length.max_length = 12
length.cache_length = 10
[train]
steps = 2
lr = 1e-4
precision = "bf16-mixed"
TOML
"$build/r1" train "$out/grpo.toml" --quiet --run-dir "$run"
"$build/bench/device_probe" --compare "$model" "$run/model" >"$out/moved.json"
log "GRPO steps done at $((SECONDS - t0)) s"

# 5. One report.
python3 - "$out" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
report = json.loads((out / "probe-core.json").read_text())
steps = [json.loads(l) for l in (out / "grpo-run" / "metrics.jsonl").read_text().splitlines() if l.strip()]
keep = ("time/rollout", "time/generate", "time/train", "time/sync", "memory/weights_mib", "memory/masters_mib",
        "memory/grads_mib", "memory/moments_mib", "length/mean")
report["grpo_step"] = {"steps": [{k: s[k] for k in keep if k in s} for s in steps if "step" in s],
                       "weights_moved_max_abs": json.loads((out / "moved.json").read_text())["max_abs_diff"]}
(out / "probe.json").write_text(json.dumps(report, indent=1) + "\n")
print(json.dumps(report, indent=1))
PY
log "report: $out/probe.json ($((SECONDS - t0)) s)"
