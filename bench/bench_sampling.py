#!/usr/bin/env python3
"""The decode step's sampler on CPU: r1's fused sampler, the ATen composition it replaces, and PyTorch
the way Hugging Face generate samples (softmax of logits / T, torch.multinomial) plus the log-prob
trainers record (log_softmax, gather); greedy is argmax plus that log-prob. Same logits on every side
(torch.manual_seed(0); torch.randn(B, V) * 3, which the C++ side reproduces with at::manual_seed(0)),
same threads; medians of --repeats.

  scripts/ref-python bench/bench_sampling.py --threads 2     # runs build/bench/bench_sampling
"""
import argparse
import json
import statistics
import subprocess
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def torch_ms(logits, mode, repeats):
    def greedy():
        t = logits.argmax(-1)
        return t, logits.log_softmax(-1).gather(1, t[:, None])

    def sampled():
        t = torch.multinomial(torch.softmax(logits / 1.0, -1), 1)
        return t, logits.log_softmax(-1).gather(1, t)

    f = greedy if mode == "greedy" else sampled
    times = []
    for r in range(repeats + 2):
        t0 = time.perf_counter()
        f()
        if r >= 2:
            times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batches", default="1,8,64")
    ap.add_argument("--vocabs", default="32000,151936")
    ap.add_argument("--repeats", type=int, default=21)
    ap.add_argument("--bin", default=str(ROOT / "build" / "bench" / "bench_sampling"))
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    cmd = [a.bin, "--threads", str(a.threads), "--batches", a.batches, "--vocabs", a.vocabs,
           "--repeats", str(a.repeats)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    rows = [json.loads(l) for l in out.splitlines() if l.startswith("{")]
    print(f"torch {torch.__version__}, {a.threads} threads, medians of {a.repeats}")
    print("| vocab | batch | mode | r1 fused ms | ATen composition ms | PyTorch (HF-style) ms "
          "| fused vs ATen | fused vs PyTorch |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        torch.manual_seed(0)
        logits = torch.randn(r["batch"], r["vocab"]) * 3
        t = torch_ms(logits, r["mode"], a.repeats)
        print(f"| {r['vocab']} | {r['batch']} | {r['mode']} | {r['fused_ms']:.3f} | {r['aten_ms']:.3f} | {t:.3f} "
              f"| **{r['aten_ms'] / r['fused_ms']:.2f}x** | **{t / r['fused_ms']:.2f}x** |")


if __name__ == "__main__":
    main()
