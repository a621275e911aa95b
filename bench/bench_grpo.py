#!/usr/bin/env python3
"""End-to-end GRPO throughput: `r1 train` vs TRL GRPOTrainer, on CPU, same setup, same rewards.

Both sides train the same Hugging Face model folder (--model, default models/r1zero-tiny; any folder
with config.json, model.safetensors, tokenizer.json and tokenizer_config.json) on the same data
(data/arith/rl_train.jsonl with configs/demo.toml's R1-Zero prompt template and reference fields).

r1 side: `build/r1 train configs/demo.toml --quiet --run-dir TMP --set model.path=DIR --set ...`
(cwd = the repository root), with every setting below given as a --set: rollout.group_size (G),
rollout.prompts_per_step, rollout.workers (--rollout-workers; default one single-thread worker per
thread, as the demo does on 2 cores), rollout.prompts_per_batch (the step's prompts split over the
workers), rollout.max_batch = prompts x G (a worker decodes its whole batch together),
rollout.threads, model.threads, sampling.max_new_tokens, sampling.stop=[], train.steps,
train.micro_batch, one inner epoch and one minibatch; eval, checkpoints every N steps and sample
logs are off. The rest comes from configs/demo.toml.
TRL side: TRL 1.16 `GRPOTrainer` (transformers generate, `use_cpu`, fp32), run in a child process
of this script (`--only trl --child-json FILE`), with num_generations = G, generation batch =
prompts x G (one generation per optimizer step, as r1), per_device_train_batch_size = --micro-batch
and gradient_accumulation_steps = steps_per_generation = prompts x G / micro-batch (so one optimizer
step covers the same completions in the same number of micro-batches as r1).
Both sides: temperature 1.0 (no top-p/top-k), stop at the model's eos only (TRL's generate path has
no stop strings, so r1's "</answer>" stop string is switched off too), token-mean (DAPO) loss, clip
0.2 / 0.28, beta = 0 (no reference model), one inner iteration, group-scaled advantages, AdamW lr
2e-4 with 5 warm-up steps then cosine decay, grad-norm clip 1.0, no weight decay, no gradient
checkpointing (TRL's default is on; off is faster here, and r1 keeps activations; --checkpointing
turns it on on both sides), the same thread count. --lora R trains LoRA adapters of rank R (alpha
2R, no dropout) on every linear layer but the output on both sides: r1's [lora] and TRL with a
PEFT LoraConfig (target_modules="all-linear"); the base weights are frozen on both.
Rewards: r1's own checkers on both sides, as configs/demo.toml composes them (math with
math.require_anchor = true, weight 1.0; format with format.think_prefilled = true, weight 0.2). r1
scores in-process; for TRL this script starts `build/r1 rewards serve --port P --config TMP.toml`
(a config with the same [[rewards.checkers]]), and TRL's one reward function POSTs the completions
of a generation batch to http://127.0.0.1:P/v1/score (urllib, one request per reward call, i.e. one
per optimizer step) and returns each result's total score (reward_weights [1.0]), so each completion
gets exactly the reward r1 gives it. The HTTP round trip is part of TRL's reward time. The server is
stopped with SIGTERM at the end.
Each side runs --warmup + --steps steps; only the last --steps are timed. Step times come from the
trainers' own progress: the arrival time of each line of r1's metrics.jsonl, and a TrainerCallback's
on_step_end on the TRL side. samples/s = completions / wall time of the timed steps. Peak RSS of
each side is its process's ru_maxrss from os.wait4 (r1 train; the TRL child), measured the same way;
the reward server's is printed apart.

  scripts/ref-python bench/bench_grpo.py                   # prints a table
  scripts/ref-python bench/bench_grpo.py --model /tmp/r1-bench-models/h512-l8 --max-new-tokens 64
"""
import argparse
import json
import math
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "configs" / "demo.toml"
REWARD_FUNC = "r1_rewards"  # the TRL reward function's name (profiling phase, log keys)


def load_setup():
    cfg = tomllib.loads(DEMO.read_text())
    template = cfg["data"]["prompt_template"]
    rows = [json.loads(l) for l in (ROOT / "data" / "arith" / "rl_train.jsonl").read_text().splitlines() if l.strip()]
    return cfg, template, rows


def rollout_layout(a):
    """r1's rollout workers, threads per worker and prompts per worker batch for --threads."""
    workers = a.rollout_workers or max(1, min(a.threads, a.prompts_per_step))
    return workers, max(1, a.threads // workers), -(-a.prompts_per_step // workers)


def wait_child(proc, block=True):
    """os.wait4 on a Popen child: (done, rusage); sets proc.returncode so Popen never waits again."""
    pid, status, ru = os.wait4(proc.pid, 0 if block else os.WNOHANG)
    if pid == 0:
        return False, None
    proc.returncode = os.waitstatus_to_exitcode(status)
    return True, ru


def run_r1(a, total_steps):
    run_dir = Path(tempfile.mkdtemp(prefix="r1-bench-grpo-"))
    workers, worker_threads, prompts_per_batch = rollout_layout(a)
    per_step = a.prompts_per_step * a.group_size
    sets = ['eval.path=""', "sampling.stop=[]", f"train.steps={total_steps}", f"model.path={a.model}",
            f"model.threads={a.threads}", f"sampling.max_new_tokens={a.max_new_tokens}",
            f"rollout.group_size={a.group_size}", f"rollout.prompts_per_step={a.prompts_per_step}",
            f"rollout.workers={workers}", f"rollout.prompts_per_batch={prompts_per_batch}",
            f"rollout.max_batch={per_step}", f"rollout.threads={worker_threads}",
            f"train.micro_batch={a.micro_batch}", "train.inner_epochs=1", "train.minibatches=1",
            "train.save_every=0", "train.log_samples_every=0"]
    if a.checkpointing:
        sets.append('train.activation_checkpointing="layers"')
    if a.lora:
        sets += [f"lora.rank={a.lora}", f"lora.alpha={2 * a.lora}", 'lora.target_modules=["all-linear"]']
    sets += a.r1_set
    cmd = [str(a.bin), "train", str(DEMO), "--quiet", "--run-dir", str(run_dir / "run")]
    for s in sets:
        cmd += ["--set", s]
    print("r1:", " ".join(cmd), flush=True)
    metrics = run_dir / "run" / "metrics.jsonl"
    err_path = run_dir / "stderr.txt"
    t_start = time.perf_counter()
    with open(err_path, "w") as err:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err)
    seen, arrivals, records = 0, [], []
    while True:
        done, ru = wait_child(proc, block=False)
        if metrics.exists():
            text = metrics.read_text()
            lines = [l for l in text[:text.rfind("\n") + 1].splitlines() if l.strip()]  # whole lines only
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
    if proc.returncode != 0:
        sys.exit(f"r1 train failed ({proc.returncode}):\n{err_path.read_text()[-3000:]} (run dir {run_dir})")
    shutil.rmtree(run_dir, ignore_errors=True)  # holds the final checkpoint (GBs for large models)
    return t_start, arrivals, records, ru.ru_maxrss * 1024


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def toml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k} = {toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(f"cannot write {v!r} as TOML")


def reward_service_config(cfg):
    """A `r1 rewards serve` config with configs/demo.toml's [rewards] section, checkers included."""
    rewards = dict(cfg.get("rewards", {}))
    checkers = rewards.pop("checkers", [])
    out = ["[service]", 'host = "127.0.0.1"', "io_threads = 1", "", "[rewards]"]
    out += [f"{k} = {toml_value(v)}" for k, v in rewards.items()]
    for c in checkers:
        out += ["", "[[rewards.checkers]]"] + [f"{k} = {toml_value(v)}" for k, v in c.items()]
    return "\n".join(out) + "\n"


def start_reward_server(a, cfg, tmp):
    conf = tmp / "rewards.toml"
    conf.write_text(reward_service_config(cfg))
    port = free_port()
    cmd = [str(a.bin), "rewards", "serve", "--port", str(port), "--config", str(conf)]
    print("reward service:", " ".join(cmd), flush=True)
    log = open(tmp / "rewards-serve.log", "w")
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            sys.exit(f"r1 rewards serve exited ({proc.returncode}):\n{(tmp / 'rewards-serve.log').read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=2) as r:
                if r.status == 200:
                    break
        except (urllib.error.URLError, ConnectionError, OSError):
            pass
        if time.monotonic() > deadline:
            proc.kill()
            sys.exit("r1 rewards serve did not answer GET /healthz within 60 s")
        time.sleep(0.05)
    return proc, url


def stop_reward_server(proc):
    proc.send_signal(signal.SIGTERM)
    _, ru = wait_child(proc)
    return ru.ru_maxrss * 1024


def run_trl(a, total_steps, cfg, template, rows, reward_url):
    """Runs in the child process (--child-json): TRL GRPOTrainer, rewards from r1's reward service."""
    import torch
    torch.set_num_threads(a.threads)
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer
    import transformers
    import trl

    tok = AutoTokenizer.from_pretrained(a.model)
    model = AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.float32)
    ref_fields = cfg["data"].get("reference_fields", ["answer"])
    ds = Dataset.from_list([{"prompt": template.replace("{question}", r["question"]),
                             "reference_json": json.dumps({k: r[k] for k in ref_fields if k in r})}
                            for r in rows])

    parts_seen = []  # per reward call: mean of each part (for the report)

    def r1_rewards(prompts, completions, reference_json, **kw):
        body = {"samples": [{"prompt": p, "completion": c, "reference": json.loads(ref)}
                            for p, c, ref in zip(prompts, completions, reference_json)]}
        req = urllib.request.Request(reward_url + "/v1/score", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(req, timeout=600) as r:
            results = json.loads(r.read())["results"]
        if len(results) != len(completions):
            raise RuntimeError(f"reward service returned {len(results)} results for {len(completions)} samples")
        names = sorted({k for x in results for k in x.get("parts", {})})
        parts_seen.append({k: statistics.mean(x["parts"].get(k, 0.0) for x in results) for k in names})
        return [float(x["score"]) for x in results]

    r1_rewards.__name__ = REWARD_FUNC

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

    per_step = a.prompts_per_step * a.group_size
    accum = per_step // a.micro_batch
    out_dir = tempfile.mkdtemp(prefix="trl-bench-grpo-")
    args = GRPOConfig(
        output_dir=out_dir, use_cpu=True, bf16=False, fp16=False, report_to="none", save_strategy="no",
        logging_steps=1, disable_tqdm=True, seed=1, max_steps=total_steps,
        num_generations=a.group_size, per_device_train_batch_size=a.micro_batch,
        gradient_accumulation_steps=accum,
        steps_per_generation=accum,  # one generation of prompts x G completions per optimizer step, as r1
        max_completion_length=a.max_new_tokens, temperature=1.0, top_p=1.0, top_k=0,
        loss_type="dapo", beta=0.0, num_iterations=1, epsilon=0.2, epsilon_high=0.28, scale_rewards="group",
        learning_rate=2e-4, warmup_steps=5, lr_scheduler_type="cosine", max_grad_norm=1.0,
        gradient_checkpointing=a.checkpointing,  # r1's train.activation_checkpointing = "layers" when set
        weight_decay=0.0, reward_weights=[1.0], dataloader_num_workers=0, log_completions=False)
    peft_config = None
    if a.lora:  # PEFT LoRA on every linear layer but the output, as r1's "all-linear"
        from peft import LoraConfig
        peft_config = LoraConfig(r=a.lora, lora_alpha=2 * a.lora, lora_dropout=0.0, target_modules="all-linear",
                                 task_type="CAUSAL_LM")
    trainer = GRPOTrainer(model=model, reward_funcs=[r1_rewards], args=args, train_dataset=ds,
                          processing_class=tok, callbacks=[Clock()], peft_config=peft_config)
    t_start = time.perf_counter()
    trainer.train()
    shutil.rmtree(out_dir, ignore_errors=True)
    logs = [h for h in trainer.state.log_history if "loss" in h or "reward" in h]
    return {"ends": [t - t_start for t in times], "logs": logs, "phases": phases, "parts": parts_seen,
            "version": f"TRL {trl.__version__} GRPOTrainer (transformers {transformers.__version__}, torch {torch.__version__})"}


def run_trl_child(a, cfg, tmp):
    """Starts the reward service and the TRL child; returns the child's results and both peak RSS."""
    server, url = start_reward_server(a, cfg, tmp)
    out = tmp / "trl.json"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--only", "trl", "--child-json", str(out),
           "--reward-url", url, "--model", str(a.model), "--threads", str(a.threads), "--warmup", str(a.warmup),
           "--steps", str(a.steps), "--max-new-tokens", str(a.max_new_tokens), "--group-size", str(a.group_size),
           "--prompts-per-step", str(a.prompts_per_step), "--micro-batch", str(a.micro_batch)]
    if a.checkpointing:
        cmd.append("--checkpointing")
    if a.lora:
        cmd += ["--lora", str(a.lora)]
    try:
        proc = subprocess.Popen(cmd, cwd=ROOT)
        _, ru = wait_child(proc)
    finally:
        server_rss = stop_reward_server(server)
    if proc.returncode != 0:
        sys.exit(f"TRL child failed ({proc.returncode})")
    res = json.loads(out.read_text())
    res["rss"] = ru.ru_maxrss * 1024
    res["server_rss"] = server_rss
    return res


def summarize(name, t_start, ends, warmup, per_step):
    steps = [b - a for a, b in zip([t_start] + ends[:-1], ends)]
    timed = steps[warmup:]
    wall = ends[-1] - ends[warmup - 1] if warmup > 0 else ends[-1] - t_start
    return {"name": name, "median_step": statistics.median(timed), "samples_s": per_step * len(timed) / wall,
            "wall": wall, "steps": steps}


def mib(b):
    return b / 2**20


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=str(ROOT / "build" / "r1"))
    ap.add_argument("--model", default=str(ROOT / "models" / "r1zero-tiny"),
                    help="Hugging Face model folder for both sides (default models/r1zero-tiny)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--max-new-tokens", type=int, default=140)
    ap.add_argument("--group-size", type=int, default=8)
    ap.add_argument("--prompts-per-step", type=int, default=8)
    ap.add_argument("--micro-batch", type=int, default=32,
                    help="completions per forward/backward (r1 train.micro_batch; TRL per_device_train_batch_size)")
    ap.add_argument("--rollout-workers", type=int, default=0,
                    help="r1 rollout.workers (0: min(threads, prompts per step), one thread each)")
    ap.add_argument("--only", choices=["r1", "trl"], default=None)
    ap.add_argument("--checkpointing", action="store_true",
                    help="activation checkpointing on both sides (r1 train.activation_checkpointing = \"layers\", "
                         "TRL gradient_checkpointing=True); default off on both")
    ap.add_argument("--lora", type=int, default=0,
                    help="LoRA of this rank on every linear layer on both sides (r1 [lora], TRL + PEFT LoraConfig "
                         "target_modules=\"all-linear\"), alpha = 2 x rank, no dropout; 0: full fine-tuning")
    ap.add_argument("--r1-set", action="append", default=[], help="extra --set for the r1 side (repeatable)")
    ap.add_argument("--child-json", default=None, help="internal: run the TRL side here and write its results")
    ap.add_argument("--reward-url", default=None, help="internal: the reward service the TRL child scores with")
    a = ap.parse_args()
    a.model = Path(a.model).resolve()
    a.bin = Path(a.bin).resolve()
    per_step = a.group_size * a.prompts_per_step
    a.micro_batch = min(a.micro_batch, per_step)
    if per_step % a.micro_batch:
        sys.exit(f"--micro-batch {a.micro_batch} must divide prompts x G = {per_step} (TRL's micro-batches are equal)")
    for f in ("config.json", "tokenizer.json"):
        if not (a.model / f).exists():
            sys.exit(f"--model {a.model}: no {f}")
    cfg, template, rows = load_setup()
    total = a.warmup + a.steps

    if a.child_json:  # the TRL child
        if not a.reward_url:
            sys.exit("--child-json needs --reward-url")
        res = run_trl(a, total, cfg, template, rows, a.reward_url)
        Path(a.child_json).write_text(json.dumps(res))
        return 0

    workers, worker_threads, ppb = rollout_layout(a)
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; {a.threads} threads each; "
          f"model {a.model}; {total} steps ({a.warmup} warm-up), {a.prompts_per_step} prompts x G {a.group_size} = "
          f"{per_step} completions per step in micro-batches of {a.micro_batch}; max_new_tokens {a.max_new_tokens}; "
          f"r1 rollout: {workers} worker(s) x {worker_threads} thread(s), {ppb} prompts per worker batch", flush=True)
    res = []
    server_rss = None
    if a.only != "trl":
        t0, ends, recs, rss = run_r1(a, total)
        assert len(ends) == total, f"r1 logged {len(ends)} steps, expected {total}"
        r = summarize("r1.cpp", t0, ends, a.warmup, per_step)
        r["len"] = statistics.mean(x["length/mean"] for x in recs[a.warmup:])
        r["reward"] = statistics.mean(x["reward/mean"] for x in recs[a.warmup:])
        r["rss"] = rss
        r["split"] = {k: statistics.median(x[k] for x in recs[a.warmup:])
                      for k in ("time/rollout", "time/reward", "time/train", "time/sync") if k in recs[0]}
        res.append(r)
        print(f"  r1 step times (s): {', '.join(f'{s:.2f}' for s in r['steps'])}; median split: "
              + ", ".join(f"{k} {v:.2f}" for k, v in r["split"].items()), flush=True)
    if a.only != "r1":
        with tempfile.TemporaryDirectory(prefix="bench-grpo-trl-") as tmp:
            c = run_trl_child(a, cfg, Path(tmp))
        ends, logs, phases = c["ends"], c["logs"], c["phases"]
        assert len(ends) == total, f"TRL logged {len(ends)} steps, expected {total}"
        r = summarize(c["version"], 0.0, ends, a.warmup, per_step)
        lens = [h.get("completions/mean_length") for h in logs[a.warmup:] if h.get("completions/mean_length") is not None]
        rew = [h.get("reward") for h in logs[a.warmup:] if h.get("reward") is not None]
        r["len"] = statistics.mean(lens) if lens else float("nan")
        r["reward"] = statistics.mean(rew) if rew else float("nan")
        r["rss"] = c["rss"]
        server_rss = c["server_rss"]
        res.append(r)
        parts = c["parts"][a.warmup:] or c["parts"]
        part_means = {k: statistics.mean(p.get(k, math.nan) for p in parts) for k in (parts[0] if parts else {})}
        print(f"  TRL step times (s): {', '.join(f'{s:.2f}' for s in r['steps'])}; per-step phase totals over "
              "the timed steps (profiling_context; " + REWARD_FUNC + " = the HTTP round trip to r1's reward "
              "service): " + ", ".join(
                  f"{k} {sum(v[-len(v) * a.steps // total:]) / a.steps:.3f}" for k, v in phases.items())
              + "; mean reward parts from the service: " + ", ".join(f"{k} {v:.3f}" for k, v in part_means.items()),
              flush=True)

    print()
    print("| trainer | median step (s) | samples/s | mean completion length | mean reward | peak RSS (MiB) |")
    print("|---|---|---|---|---|---|")
    for r in res:
        print(f"| {r['name']} | {r['median_step']:.2f} | {r['samples_s']:.2f} | {r['len']:.1f} | {r['reward']:.3f} "
              f"| {mib(r['rss']):.0f} |")
    if len(res) == 2:
        print(f"\nratio (r1 samples/s / TRL samples/s): {res[0]['samples_s'] / res[1]['samples_s']:.2f}x; "
              f"median step TRL / r1: {res[1]['median_step'] / res[0]['median_step']:.2f}x; "
              f"peak RSS r1 / TRL: {res[0]['rss'] / res[1]['rss']:.2f}x")
    if server_rss is not None:
        print(f"TRL's rewards came from `r1 rewards serve` (peak RSS {mib(server_rss):.0f} MiB, not counted above)")


if __name__ == "__main__":
    sys.exit(main())
