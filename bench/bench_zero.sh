#!/usr/bin/env bash
# ZeRO stages side by side on this machine: 2 ranks over Gloo (`r1 launch --nproc 2`), each with
# one thread and one rollout worker, training MODEL (default the 25.4M h512-l8 bench model; make it
# with scripts/fixtures/make_bench_models.py) with configs/demo.toml's data and rewards, float32,
# G = 4, 4 prompts per step (2 per rank), NEW tokens per completion (default 64), micro-batch 4, one
# warm-up step then STEPS timed steps (default 3); eval, checkpoints and sample logs off. Every
# stage runs the same input. Per stage: the median step time (rollout + update + publish, from
# metrics.jsonl), the median update time, each rank's peak RSS (ru_maxrss, reported by r1 launch),
# and what each rank holds (memory/*_mib metrics).
#   bash bench/bench_zero.sh                                            # 25M model
#   MODEL=/tmp/r1-bench-models/qwen2.5-0.5b-shape bash bench/bench_zero.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
R1=${R1:-build/r1}
MODEL=${MODEL:-/tmp/r1-bench-models/h512-l8}
NEW=${NEW:-64}
STEPS=${STEPS:-3}
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
[ -f "$MODEL/config.json" ] || { echo "no model at $MODEL (scripts/fixtures/make_bench_models.py)"; exit 1; }

printf "%-6s %9s %9s %14s %14s %9s %9s %9s %9s\n" stage "step s" "update s" "rank 0 RSS" "rank 1 RSS" \
  "weights" "masters" "grads" "moments"
for z in ${STAGES:-0 1 2 3}; do
  log="$OUT/z$z.log"
  "$R1" launch --nproc 2 --master-port $((29900 + z)) -- train configs/demo.toml --quiet --run-dir "$OUT/z$z" \
    --set "model.path=\"$MODEL\"" --set model.threads=1 --set rollout.workers=1 --set rollout.threads=1 \
    --set rollout.group_size=4 --set rollout.prompts_per_step=4 --set rollout.prompts_per_batch=2 \
    --set rollout.max_batch=8 --set sampling.max_new_tokens="$NEW" --set 'sampling.stop=[]' \
    --set train.steps=$((STEPS + 1)) --set train.micro_batch=4 --set train.save_every=0 \
    --set train.log_samples_every=0 --set 'eval.path=""' --set distributed.zero_stage=$z >"$log" 2>&1 ||
    { cat "$log"; exit 1; }
  rss0=$(sed -n 's/.*rank 0 finished, peak RSS \([0-9]*\) MiB.*/\1/p' "$log")
  rss1=$(sed -n 's/.*rank 1 finished, peak RSS \([0-9]*\) MiB.*/\1/p' "$log")
  python3 - "$OUT/z$z/metrics.jsonl" "$z" "$rss0" "$rss1" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if '"time/train"' in l][1:]  # the first is the warm-up
step = statistics.median(r["time/rollout"] + r["time/train"] + r["time/sync"] for r in rows)
upd = statistics.median(r["time/train"] for r in rows)
last = rows[-1]
mib = lambda k: f'{last.get(k, 0):.0f} MiB'
print(f'{sys.argv[2]:<6} {step:9.2f} {upd:9.2f} {sys.argv[3] + " MiB":>14} {sys.argv[4] + " MiB":>14} '
      f'{mib("memory/weights_mib"):>9} {mib("memory/masters_mib"):>9} {mib("memory/grads_mib"):>9} '
      f'{mib("memory/moments_mib"):>9}')
EOF
done
