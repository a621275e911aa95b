#!/usr/bin/env python3
"""Long-tailed completion lengths: r1's continuous batching vs static batches vs Hugging Face generate.

The workload RL produces: 64 prompts x G = 8 completions, where 10% of the completions run to
max_new_tokens = 512 and the rest stop at a length drawn uniformly from [32, 256]. A random-weight
Qwen3-style model (made by bench_generate.py's make_model) cannot choose such lengths itself, so
each side forces eos at the drawn step, as a logit bias would (and bans it before): r1 through
GenerationRequest::forced_stop, HF through a LogitsProcessor. Greedy decoding; same model files,
prompts, lengths and threads on every side.

  r1 continuous  the engine (continuous batching over the paged KV cache)
  r1 static      the same engine admitting new prompts only once a batch has drained
                 (Schedule::drained: the static batches of the engine before continuous batching)
  HF generate    batches of 8 prompts x G = 8 (64 rows), like r1's max_batch 64

Reports generated tokens/s (every completion's tokens / wall time), decode steps, and KV-cache
memory: the paged cache's peak blocks in use vs the preallocation static batches need.

  scripts/ref-python bench/bench_longtail.py                   # 58M model (hidden 512, 8 layers)
  scripts/ref-python bench/bench_longtail.py --hidden 128 --layers 4 --vocab 512   # demo-sized
  scripts/ref-python bench/bench_longtail.py --dtype bfloat16  # both sides in bfloat16
"""
import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from transformers import LogitsProcessor, LogitsProcessorList, __version__ as hf_version

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_generate import make_model  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
EOS = 2


def workload(a):
    rng = random.Random(a.seed)
    g = torch.Generator().manual_seed(a.seed)
    reqs = []
    for _ in range(a.prompts):
        plen = rng.randint(a.prompt_min, a.prompt_max)
        prompt = torch.randint(3, a.vocab, (plen,), generator=g).tolist()
        stops = [a.max_new if rng.random() < a.tail else rng.randint(a.short_min, a.short_max) for _ in range(a.group)]
        reqs.append({"prompt": prompt, "stop": stops})
    return reqs


class ForcedLengths(LogitsProcessor):
    """eos at each row's drawn step, never before (a logit bias)."""

    def __init__(self, lengths, prompt_len):
        self.lengths = torch.tensor(lengths)
        self.prompt_len = prompt_len

    def __call__(self, input_ids, scores):
        step = input_ids.shape[1] - self.prompt_len  # tokens generated so far
        force = self.lengths == step + 1
        scores[:, EOS] = float("-inf")
        scores[force] = float("-inf")
        scores[force, EOS] = 0.0
        return scores


def run_hf(model, reqs, a):
    tokens, t0 = 0, time.perf_counter()
    per_batch = a.max_batch // a.group
    with torch.inference_mode():
        for i in range(0, len(reqs), per_batch):
            batch = reqs[i:i + per_batch]
            plen = max(len(r["prompt"]) for r in batch)
            # Each prompt repeated G times (greedy generate takes no num_return_sequences; it would
            # expand the rows the same way), left-padded as HF expects for decoder-only models.
            ids = torch.zeros((len(batch) * a.group, plen), dtype=torch.long)
            mask = torch.zeros_like(ids)
            for b, r in enumerate(batch):
                rows = slice(b * a.group, (b + 1) * a.group)
                ids[rows, plen - len(r["prompt"]):] = torch.tensor(r["prompt"])
                mask[rows, plen - len(r["prompt"]):] = 1
            lengths = [s for r in batch for s in r["stop"]]
            out = model.generate(input_ids=ids, attention_mask=mask, do_sample=False, max_new_tokens=a.max_new,
                                 eos_token_id=EOS, pad_token_id=0, use_cache=True,
                                 logits_processor=LogitsProcessorList([ForcedLengths(lengths, plen)]))
            gen = out[:, plen:]
            for row, want in zip(gen, lengths):
                n = int((row == EOS).nonzero()[0]) + 1 if (row == EOS).any() else len(row)
                assert n == want, (n, want)
                tokens += n
    return tokens, time.perf_counter() - t0


def run_r1(a, model_dir, wl, schedule):
    cmd = [a.bin, "--model", str(model_dir), "--workload", str(wl), "--threads", str(a.threads), "--max-new",
           str(a.max_new), "--max-batch", str(a.max_batch), "--schedule", schedule, "--repeats", "1", "--dtype", a.dtype]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return [json.loads(l) for l in out.splitlines() if l.startswith("{")][0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=str(ROOT / "build" / "bench" / "bench_longtail"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--group", type=int, default=8)
    ap.add_argument("--max-new", type=int, default=512)
    ap.add_argument("--max-batch", type=int, default=64)
    ap.add_argument("--tail", type=float, default=0.1)
    ap.add_argument("--short-min", type=int, default=32)
    ap.add_argument("--short-max", type=int, default=256)
    ap.add_argument("--prompt-min", type=int, default=32)
    ap.add_argument("--prompt-max", type=int, default=96)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-hf", action="store_true", help="skip HF generate (the slowest side)")
    ap.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32",
                    help="both sides compute in it (the model files stay float32; each side converts on load)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    print(f"load average before: {os.getloadavg()[0]:.2f} (on {os.cpu_count()} cores)")
    with tempfile.TemporaryDirectory(prefix="r1-bench-longtail-") as tmp:
        tmp = Path(os.environ.get("R1_BENCH_DIR") or tmp)
        model = make_model(tmp / "model", a).to(getattr(torch, a.dtype))
        model.eval()
        reqs = workload(a)
        wl = tmp / "workload.jsonl"
        wl.write_text("".join(json.dumps(r) + "\n" for r in reqs))
        lengths = [s for r in reqs for s in r["stop"]]
        print(f"model: {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M params, {a.dtype}; {a.prompts} prompts "
              f"of {a.prompt_min}-{a.prompt_max} tokens x G = {a.group}; {sum(l == a.max_new for l in lengths)} of "
              f"{len(lengths)} completions run to {a.max_new}, the rest {a.short_min}-{a.short_max}; "
              f"{sum(lengths)} tokens in all; {a.threads} threads; transformers {hf_version}, torch {torch.__version__}")
        res = {"continuous": [], "drained": [], "hf": []}
        for rep in range(a.repeats):
            for sched in ("continuous", "drained"):
                res[sched].append(run_r1(a, tmp / "model", wl, sched))
            if not a.no_hf:
                toks, secs = run_hf(model, reqs, a)
                assert toks == sum(lengths)
                res["hf"].append({"median_tok_s": toks / secs, "median_s": secs})
            print(f"  repeat {rep + 1}: " + ", ".join(f"{k} {v[-1]['median_tok_s']:.0f} tok/s" for k, v in res.items() if v),
                  flush=True)
        same = len({r["tokens_hash"] for r in res["continuous"] + res["drained"]}) == 1
        # float32 decoding is schedule-invariant here (tests/test_rollout.cpp); in bfloat16 a row's
        # GEMM kernel and rounding depend on how many rows share the step, so greedy tokens may differ.
        assert same or a.dtype != "float32", "schedules disagree"
        if not same:
            print("note: the schedules' greedy tokens differ (bfloat16 rounding depends on the batch); "
                  "the forced stops keep every completion's length, so the work is the same")
        med = lambda k, f: statistics.median(r[f] for r in res[k])
        c = med("continuous", "median_tok_s")
        print()
        print("| engine | tokens/s | wall s | decode steps | KV memory (MiB) | peak RSS (MiB) | r1 continuous is |")
        print("|---|---|---|---|---|---|---|")
        last = {k: v[-1] for k, v in res.items() if v}
        print(f"| r1 continuous (paged KV) | {c:.1f} | {med('continuous', 'median_s'):.1f} | "
              f"{last['continuous']['decode_steps']} | {last['continuous']['kv_peak_mib']:.1f} peak in use "
              f"(pool {last['continuous']['kv_pool_mib']:.1f}) | {last['continuous']['peak_rss_mib']:.0f} | |")
        d = med("drained", "median_tok_s")
        print(f"| r1 static batches | {d:.1f} | {med('drained', 'median_s'):.1f} | {last['drained']['decode_steps']} | "
              f"{last['drained']['kv_static_mib']:.1f} preallocated by today's engine | "
              f"{last['drained']['peak_rss_mib']:.0f} | **{c / d:.2f}x** |")
        if res["hf"]:
            h = med("hf", "median_tok_s")
            print(f"| HF generate | {h:.1f} | {med('hf', 'median_s'):.1f} | | | | **{c / h:.2f}x** |")


if __name__ == "__main__":
    main()
