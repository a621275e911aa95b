#!/usr/bin/env python3
"""[train] precision fp32 vs bf16-mixed: one training step (build/bench/bench_precision: forward,
loss, backward over micro-batches, gradient accumulation, AdamW) of each model, each precision in
its own process on the same random sequences and threads, with its peak RSS from the OS (os.wait4);
and the GEMM GFLOP/s of float32 (MKL, and r1's oneDNN path) and bfloat16 at training shapes.
Standard library only.

  python3 bench/bench_precision.py --model /tmp/r1-bench-models/h512-l8
  python3 bench/bench_precision.py --model /tmp/r1-bench-models/qwen2.5-0.5b-shape --seqs 4 --completion 64 --micro 2 --steps 2
  python3 bench/bench_precision.py --gemm 512x4864x896,512x151669x896
"""
import argparse
import json
import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXE = ROOT / "build" / "bench" / "bench_precision"


def run(args):
    """The JSON line the benchmark prints, and its peak RSS in GB."""
    p = subprocess.Popen([str(EXE)] + args, stdout=subprocess.PIPE, text=True)
    out = p.stdout.read()
    _, status, usage = os.wait4(p.pid, 0)
    if status != 0:
        raise SystemExit(f"bench_precision {' '.join(args)} failed with status {status}")
    return json.loads(out.strip().splitlines()[-1]), usage.ru_maxrss / 1024 / 1024


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", help="Hugging Face model folder")
    ap.add_argument("--seqs", default="8")
    ap.add_argument("--prompt", default="32")
    ap.add_argument("--completion", default="96")
    ap.add_argument("--micro", default="4")
    ap.add_argument("--steps", default="3")
    ap.add_argument("--threads", default="2")
    ap.add_argument("--gemm", default="512x1536x512,512x4864x896,512x151669x896")
    a = ap.parse_args()
    print("| GEMM M x N x K | fp32 MKL GFLOP/s | fp32 oneDNN GFLOP/s | bf16 GFLOP/s | bf16 / best fp32 |")
    print("|---|---|---|---|---|")
    for shape in a.gemm.split(","):
        g, _ = run(["--gemm", shape, "--threads", a.threads])
        best = max(g["fp32_mkl_gflops"], g["fp32_onednn_gflops"])
        print(f"| {shape} | {g['fp32_mkl_gflops']:.0f} | {g['fp32_onednn_gflops']:.0f} | {g['bf16_gflops']:.0f} | "
              f"{g['bf16_gflops'] / best:.2f}x |")
    if not a.model:
        return
    common = ["--model", a.model, "--seqs", a.seqs, "--prompt", a.prompt, "--completion", a.completion,
              "--micro", a.micro, "--steps", a.steps, "--threads", a.threads]
    rows = {p: run(common + ["--precision", p]) for p in ("fp32", "bf16-mixed")}
    (f, f_rss), (b, b_rss) = rows["fp32"], rows["bf16-mixed"]
    print(f"\n{Path(a.model).name}: {a.seqs} sequences x {int(a.prompt) + int(a.completion)} tokens, "
          f"micro-batch {a.micro}, median of {a.steps} steps")
    print("| precision | s/step | tokens/s | peak RSS |")
    print("|---|---|---|---|")
    print(f"| fp32 | {f['step_s']:.2f} | {f['tokens_per_s']:.0f} | {f_rss:.2f} GB |")
    print(f"| bf16-mixed | {b['step_s']:.2f} | {b['tokens_per_s']:.0f} | {b_rss:.2f} GB |")
    print(f"bf16-mixed is {f['step_s'] / b['step_s']:.2f}x the speed of fp32")


if __name__ == "__main__":
    main()
