#!/usr/bin/env bash
# scripts/device-check.sh on CPU: a small Qwen2-shaped config, small workloads, the existing build.
# Checks that the report has every section and that the bf16-mixed steps moved the weights.
#   bash tests/test_device_probe.sh BUILD_DIR
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="$(cd "$1" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
python3 - "$root/bench/qwen2.5-0.5b.json" "$work/config.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c.update(hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
         vocab_size=1024, bos_token_id=1, eos_token_id=2, max_window_layers=2)
json.dump(c, open(sys.argv[2], "w"))
PY
OUT="$work/out" R1_BUILD_DIR="$build" R1_DEVICE=cpu R1_PROBE_SMALL=1 R1_PROBE_CONFIG="$work/config.json" \
  bash "$root/scripts/device-check.sh" >"$work/log" 2>&1 || { cat "$work/log"; exit 1; }
python3 - "$work/out/probe.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
calls = [c["call"] for c in r["sdpa_bf16"]]
assert calls == ["training prompt pass", "training completion pass", "prefill", "decode"], calls
assert all(c["backend"] != "error" for c in r["sdpa_bf16"] + r["sdpa_float32"]), r["sdpa_bf16"]
assert sorted(r["agreement_float32"]) == sorted(["qwen2", "qwen3", "llama", "llama-bias", "qwen3-bf16-sharded"])
for name, a in r["agreement_float32"].items():  # CPU against itself here: exact
    assert a["logits_max_abs_diff"] == 0 and a["grad_max_abs_diff"] == 0 and a["grad_max_abs"] > 0, (name, a)
assert sorted(r["decode_graphs_float32"]) == sorted(r["agreement_float32"])
for name, a in r["decode_graphs_float32"].items():  # no graphs on CPU: the two runs are the same engine here
    for k in ("greedy_same_with_and_without_graphs", "sampled_same_with_and_without_graphs",
              "greedy_equal_to_transformers"):
        same, total = map(int, a[k].split("/"))
        assert same == total > 0, (name, k, a)
    assert a["greedy_graphs_captured"] == 0 and a["sampled_graphs_captured"] == 0, (name, a)
g = r["generation_bf16"]
assert g["batch64"]["tokens"] == 64 * 32, g["batch64"]
assert g["batch64_no_graphs"]["tokens"] == 64 * 32 and g["longtail_continuous_no_graphs"]["tokens"] > 0, g
cont, drained = g["longtail_continuous"], g["longtail_drained"]
assert cont["tokens"] == drained["tokens"] and cont["decode_steps"] < drained["decode_steps"], (cont, drained)
assert r["publish_seconds"] > 0
steps = r["grpo_step"]["steps"]
assert len(steps) == 2 and all("time/train" in s for s in steps), steps
assert r["grpo_step"]["weights_moved_max_abs"] > 0, r["grpo_step"]
print("device probe report: every section present; the bf16-mixed steps moved the weights by",
      r["grpo_step"]["weights_moved_max_abs"])
PY
