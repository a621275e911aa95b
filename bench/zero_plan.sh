#!/usr/bin/env bash
# On paper: the memory plan (r1 train --plan) per GPU of a full bf16-mixed fine-tune of Qwen2.5
# shapes at each ZeRO stage over WORLD_SIZE ranks (default 8), with the 1.5B GSM8K recipe's
# workload (1024-token traces, micro_batch 8, activation checkpointing) and, by default, no KL
# reference and 64 sequences decoded together (EXTRA="" gives the recipe's kl_coef 0.001 and
# max_batch 512, whose replicated reference and KV cache then dominate), and the largest shape
# that fits LIMIT_GB per GPU (default 141, an H200). Only config.json files are written: nothing is
# loaded. CONFIG=FILE plans another workload. Usage: bash bench/zero_plan.sh [build/r1]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
R1=${1:-build/r1}
CONFIG=${CONFIG:-configs/recipes/gsm8k-qwen2.5-1.5b.toml}
WORLD=${WORLD_SIZE:-8}
LIMIT=${LIMIT_GB:-141}
EXTRA=${EXTRA-"--set grpo.kl_coef=0 --set rollout.max_batch=64"}
TOK=${R1_SHARED_DIR:-../shared}/tokenizers/qwen3/tokenizer.json
DIR=${KEEP_DIR:-$(mktemp -d)}
[ -n "${KEEP_DIR:-}" ] || trap 'rm -rf "$DIR"' EXIT

# name hidden intermediate layers heads kv_heads tied
SHAPES="0.5B 896 4864 24 14 2 true
1.5B 1536 8960 28 12 2 true
3B 2048 11008 36 16 2 true
7B 3584 18944 28 28 4 false
14B 5120 13824 48 40 8 false
32B 5120 27648 64 40 8 false
72B 8192 29568 80 64 8 false"

printf "%-6s %-7s" "model" "params"
for z in 0 1 2 3; do printf " %14s" "ZeRO $z (GB)"; done
echo
declare -A largest
while read -r name H I L NH KV TIED; do
  m="$DIR/$name"
  mkdir -p "$m"
  cp "$TOK" "$m/tokenizer.json"
  cat >"$m/config.json" <<EOF
{"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_size": $H, "intermediate_size": $I,
 "num_hidden_layers": $L, "num_attention_heads": $NH, "num_key_value_heads": $KV, "head_dim": $((H / NH)),
 "vocab_size": 152064, "tie_word_embeddings": $TIED, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
 "max_position_embeddings": 32768, "torch_dtype": "bfloat16", "hidden_act": "silu"}
EOF
  line=""
  params=""
  for z in 0 1 2 3; do
    out=$(WORLD_SIZE=$WORLD RANK=0 "$R1" train "$CONFIG" --plan \
      --set "model.path=\"$m\"" --set 'model.device="cpu"' --set model.memory_limit_gb=$LIMIT \
      --set 'train.activation_checkpointing="layers"' --set distributed.zero_stage=$z $EXTRA 2>&1 || true)
    peak=$(echo "$out" | awk '/expected peak/ {print $3}')
    params=$(echo "$out" | sed -n 's/.*(\([0-9]*\)M parameters).*/\1/p' | head -1)
    fits=$( [ -n "$peak" ] && ! echo "$out" | grep -q "over the" && echo "*" || echo " ")
    [ "$fits" = "*" ] && largest[$z]=$name
    line+=$(printf " %13s%s" "$peak" "$fits")
  done
  printf "%-6s %-7s%s\n" "$name" "${params}M" "$line"
done <<<"$SHAPES"
echo "* fits in ${LIMIT} GB per GPU on $WORLD ranks"
for z in 0 1 2 3; do echo "largest at ZeRO $z: ${largest[$z]:-none}"; done
