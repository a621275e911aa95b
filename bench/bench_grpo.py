#!/opt/r1-ref/bin/python
"""End-to-end GRPO throughput: `r1 train` vs TRL GRPOTrainer, on CPU, same setup.

Both sides train the same tiny model (models/r1zero-tiny, HF format) on the same data
(data/arith/rl_train.jsonl with configs/demo.toml's R1-Zero prompt template), with:
  G = 8 completions per prompt, 8 prompts per step (64 completions per step), max_new_tokens 140,
  temperature 1.0 (no top-p/top-k), stop at the model's eos only (TRL's generate path has no stop
  strings, so r1's "</answer>" stop string is switched off too), token-mean (DAPO) loss, clip
  0.2 / 0.28, beta = 0 (no reference model), one inner iteration, two micro-batches of 32 per
  optimizer step, AdamW lr 2e-4 with 5 warm-up steps then cosine decay, grad-norm clip 1.0, no
  gradient checkpointing (TRL's default is on; off is faster here), the same thread count;
  rewards: math (exact match of the <answer> content with the reference, weight 1) + format
  (weight 0.2), as Python functions on the TRL side (their cost is negligible either way).
Each side runs --warmup + --steps steps; only the last --steps are timed. Step times come from the
trainers' own progress: the arrival time of each line of r1's metrics.jsonl, and a TrainerCallback's
on_step_end on the TRL side. samples/s = completions / wall time of the timed steps.

  /opt/r1-ref/bin/python bench/bench_grpo.py                   # prints a table
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load_setup():
    cfg = tomllib.loads((ROOT / "configs" / "demo.toml").read_text())
    template = cfg["data"]["prompt_template"]
    rows = [json.loads(l) for l in (ROOT / "data" / "arith" / "rl_train.jsonl").read_text().splitlines() if l.strip()]
    return cfg, template, rows


def run_r1(a, total_steps):
    run_dir = Path(tempfile.mkdtemp(prefix="r1-bench-grpo-"))
    cmd = [str(a.bin), "train", str(ROOT / "configs" / "demo.toml"), "--quiet", "--run-dir", str(run_dir / "run"),
           "--set", 'eval.path=""', "--set", "sampling.stop=[]", "--set", f"train.steps={total_steps}",
           "--set", f"model.threads={a.threads}", "--set", f"sampling.max_new_tokens={a.max_new_tokens}",
           "--set", "train.save_every=0", "--set", "train.log_samples_every=0"]
    print("r1:", " ".join(cmd), flush=True)
    metrics = run_dir / "run" / "metrics.jsonl"
    t_start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seen, arrivals, records = 0, [], []
    while True:
        done = proc.poll() is not None
        if metrics.exists():
            lines = [l for l in metrics.read_text().splitlines() if l.strip()]
            now = time.perf_counter()
            for l in lines[seen:]:
                r = json.loads(l)
                if r.get("step", 0) >= 1 and "reward/mean" in r:
                    records.append(r)
                    arrivals.append(now)
            seen = len(lines)
        if done:
            break
        time.sleep(0.01)
    err = proc.stderr.read()
    if proc.returncode != 0:
        sys.exit(f"r1 train failed ({proc.returncode}):\n{err[-3000:]}")
    return t_start, arrivals, records


def run_trl(a, total_steps, template, rows):
    import torch
    torch.set_num_threads(a.threads)
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer
    import transformers
    import trl

    model_dir = ROOT / "models" / "r1zero-tiny"
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    ds = Dataset.from_list([{"prompt": template.replace("{question}", r["question"]), "answer": str(r["answer"])}
                            for r in rows])

    answer_re = re.compile(r"<answer>(.*?)</answer>", re.S)
    format_re = re.compile(r"^.*?</think>\s*<answer>.*?</answer>", re.S)  # "<think>" is in the prompt

    def math_reward(prompts, completions, answer, **kw):
        out = []
        for c, ref in zip(completions, answer):
            m = answer_re.search(c)
            out.append(1.0 if m and m.group(1).strip() == ref.strip() else 0.0)
        return out

    def format_reward(prompts, completions, **kw):
        return [1.0 if format_re.search(c) else 0.0 for c in completions]

    times = []
    # TRL times its phases with profiling_context (logged only to wandb/mlflow/trackio): collect them.
    from trl.extras import profiling
    phases = {}

    def record(self, duration):
        phases.setdefault(self.name, []).append(duration)

    profiling.ProfilingContext._log_metrics = record

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            times.append(time.perf_counter())

    out_dir = tempfile.mkdtemp(prefix="trl-bench-grpo-")
    args = GRPOConfig(
        output_dir=out_dir, use_cpu=True, bf16=False, fp16=False, report_to="none", save_strategy="no",
        logging_steps=1, disable_tqdm=True, seed=1, max_steps=total_steps,
        num_generations=a.group_size, per_device_train_batch_size=32, gradient_accumulation_steps=2,
        steps_per_generation=2,  # one generation of 64 completions per optimizer step, as r1
        max_completion_length=a.max_new_tokens, temperature=1.0, top_p=1.0, top_k=0,
        loss_type="dapo", beta=0.0, num_iterations=1, epsilon=0.2, epsilon_high=0.28, scale_rewards="group",
        learning_rate=2e-4, warmup_steps=5, lr_scheduler_type="cosine", max_grad_norm=1.0,
        gradient_checkpointing=False,  # TRL defaults to True; r1 keeps activations, so TRL does too
        weight_decay=0.0, reward_weights=[1.0, 0.2], dataloader_num_workers=0, log_completions=False)
    trainer = GRPOTrainer(model=model, reward_funcs=[math_reward, format_reward], args=args, train_dataset=ds,
                          processing_class=tok, callbacks=[Clock()])
    t_start = time.perf_counter()
    trainer.train()
    logs = [h for h in trainer.state.log_history if "loss" in h or "reward" in h]
    return t_start, times, logs, phases, f"TRL {trl.__version__}, transformers {transformers.__version__}, torch {torch.__version__}"


def summarize(name, t_start, ends, warmup, per_step):
    steps = [b - a for a, b in zip([t_start] + ends[:-1], ends)]
    timed = steps[warmup:]
    wall = ends[-1] - ends[warmup - 1] if warmup > 0 else ends[-1] - t_start
    return {"name": name, "median_step": statistics.median(timed), "samples_s": per_step * len(timed) / wall,
            "wall": wall, "steps": steps}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=str(ROOT / "build" / "r1"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--max-new-tokens", type=int, default=140)
    ap.add_argument("--group-size", type=int, default=8)
    ap.add_argument("--only", choices=["r1", "trl"], default=None)
    a = ap.parse_args()
    cfg, template, rows = load_setup()
    total = a.warmup + a.steps
    per_step = a.group_size * 8
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; {a.threads} threads each; "
          f"{total} steps ({a.warmup} warm-up), {per_step} completions per step", flush=True)
    res = []
    if a.only != "trl":
        t0, ends, recs = run_r1(a, total)
        assert len(ends) == total, f"r1 logged {len(ends)} steps, expected {total}"
        r = summarize("r1.cpp", t0, ends, a.warmup, per_step)
        r["len"] = statistics.mean(x["length/mean"] for x in recs[a.warmup:])
        r["reward"] = statistics.mean(x["reward/mean"] for x in recs[a.warmup:])
        r["split"] = {k: statistics.median(x[k] for x in recs[a.warmup:])
                      for k in ("time/rollout", "time/reward", "time/train", "time/sync")}
        res.append(r)
        print(f"  r1 step times (s): {', '.join(f'{s:.2f}' for s in r['steps'])}; median split: "
              + ", ".join(f"{k} {v:.2f}" for k, v in r["split"].items()), flush=True)
    if a.only != "r1":
        t0, ends, logs, phases, ver = run_trl(a, total, template, rows)
        assert len(ends) == total, f"TRL logged {len(ends)} steps, expected {total}"
        r = summarize(ver, t0, ends, a.warmup, per_step)
        lens = [h.get("completions/mean_length") for h in logs[a.warmup:] if h.get("completions/mean_length") is not None]
        rew = [h.get("reward") for h in logs[a.warmup:] if h.get("reward") is not None]
        r["len"] = statistics.mean(lens) if lens else float("nan")
        r["reward"] = statistics.mean(rew) if rew else float("nan")
        res.append(r)
        print(f"  TRL step times (s): {', '.join(f'{s:.2f}' for s in r['steps'])}; per-step phase totals over "
              "the timed steps (profiling_context): " + ", ".join(
                  f"{k} {sum(v[-len(v) * a.steps // total:]) / a.steps:.2f}" for k, v in phases.items()), flush=True)

    print()
    print("| trainer | median step (s) | samples/s | mean completion length | mean reward |")
    print("|---|---|---|---|---|")
    for r in res:
        print(f"| {r['name']} | {r['median_step']:.2f} | {r['samples_s']:.2f} | {r['len']:.1f} | {r['reward']:.3f} |")
    if len(res) == 2:
        print(f"\nratio (r1 samples/s / TRL samples/s): {res[0]['samples_s'] / res[1]['samples_s']:.2f}x")


if __name__ == "__main__":
    sys.exit(main())
