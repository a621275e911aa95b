#!/usr/bin/env python3
"""Generation tokens/s: r1.cpp's rollout engine vs Hugging Face transformers `generate`.

Makes a random-weight Qwen3-style model (float32 files, HF format, saved with save_pretrained to a temp
folder), random prompts of --prompt-len tokens, and measures at each batch size the wall time of
generating exactly --new tokens per row (greedy; eos disabled on both sides, so no row stops early)
including the prefill. Both sides use the same model files, prompts and thread count. Repeats are
interleaved (r1, HF, r1, HF, ...) so both see the same machine noise; medians are reported.

Also reports this machine's memory bandwidth (STREAM-like copy and read, measured by the C++ bench
on the same threads) and r1's batch-1 decode tokens/s as a fraction of the bandwidth bound
(bandwidth / bytes of weights read per decoded token).

  scripts/ref-python bench/bench_generate.py            # build/bench/bench_generate, 2 threads
  scripts/ref-python bench/bench_generate.py --dtype bfloat16   # both sides compute in bfloat16
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from transformers import Qwen3Config, Qwen3ForCausalLM, __version__ as hf_version

ROOT = Path(__file__).resolve().parents[1]


def make_model(out: Path, a):
    torch.manual_seed(0)
    cfg = Qwen3Config(
        vocab_size=a.vocab, hidden_size=a.hidden, intermediate_size=a.hidden * 3, num_hidden_layers=a.layers,
        num_attention_heads=a.hidden // 64, num_key_value_heads=max(1, a.hidden // 128), head_dim=64,
        max_position_embeddings=4096, tie_word_embeddings=False, rope_theta=1e6, rms_norm_eps=1e-6,
        bos_token_id=1, eos_token_id=2, pad_token_id=0, torch_dtype="float32")
    model = Qwen3ForCausalLM(cfg).to(torch.float32)
    # Small init so greedy decoding does not collapse into one repeated token (it would not change
    # the cost, but keeps the outputs realistic).
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.05) if p.dim() > 1 else p.fill_(1.0)
    model.save_pretrained(out, safe_serialization=True)
    return model


def run_r1(a, model_dir, prompts_file, bandwidth):
    cmd = [a.bin, "--model", str(model_dir), "--prompts", str(prompts_file), "--threads", str(a.threads),
           "--new", str(a.new), "--batches", a.batches, "--repeats", "1", "--bw-mb", "512" if bandwidth else "0",
           "--dtype", a.dtype]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return [json.loads(l) for l in out.splitlines() if l.startswith("{")]


def run_hf(model, prompts, batch, new):
    ids = torch.tensor(prompts[:batch], dtype=torch.long)
    mask = torch.ones_like(ids)
    with torch.inference_mode():
        t = time.perf_counter()
        out = model.generate(input_ids=ids, attention_mask=mask, do_sample=False, max_new_tokens=new,
                             min_new_tokens=new, use_cache=True, eos_token_id=None, pad_token_id=0)
        secs = time.perf_counter() - t
    assert out.shape == (batch, ids.shape[1] + new), out.shape
    return secs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=str(ROOT / "build" / "bench" / "bench_generate"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batches", default="1,8,32,64")
    ap.add_argument("--prompt-len", type=int, default=32)
    ap.add_argument("--new", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32",
                    help="both sides compute in it (the model files stay float32; each side converts on load)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    print(f"load average before: {os.getloadavg()[0]:.2f} (on {os.cpu_count()} cores; other load distorts multi-thread runs)")
    batches = [int(b) for b in a.batches.split(",")]

    with tempfile.TemporaryDirectory(prefix="r1-bench-gen-") as tmp:
        tmp = Path(tmp)
        model = make_model(tmp / "model", a).to(getattr(torch, a.dtype))
        model.eval()
        nparams = sum(p.numel() for p in model.parameters())
        g = torch.Generator().manual_seed(1)
        prompts = torch.randint(3, a.vocab, (max(batches), a.prompt_len), generator=g).tolist()
        (tmp / "prompts.txt").write_text("".join(" ".join(map(str, p)) + "\n" for p in prompts))
        print(f"model: Qwen3-style, hidden {a.hidden}, {a.layers} layers, vocab {a.vocab}, untied, "
              f"{nparams / 1e6:.1f}M params, {a.dtype}; prompts {a.prompt_len} tokens, {a.new} new tokens, "
              f"greedy, eos disabled; {a.threads} threads; transformers {hf_version}, torch {torch.__version__}")

        # HF warm-up.
        run_hf(model, prompts, 1, 4)
        r1_tok = {b: [] for b in batches}
        r1_dec1 = []
        hf_tok = {b: [] for b in batches}
        hf_first = []  # batch-1 time of prefill + first token, to isolate HF's decode rate
        bw = None
        info = None
        for rep in range(a.repeats):
            for rec in run_r1(a, tmp / "model", tmp / "prompts.txt", bandwidth=(rep == 0)):
                if rec["kind"] == "bandwidth":
                    bw = rec
                elif rec["kind"] == "model":
                    info = rec
                elif rec["kind"] == "gen":
                    r1_tok[rec["batch"]].append(rec["median_tok_s"])
                    if rec["batch"] == 1:
                        r1_dec1.append(rec["median_decode_tok_s"])
            for b in batches:
                hf_tok[b].append(b * a.new / run_hf(model, prompts, b, a.new))
            if 1 in batches:
                hf_first.append(run_hf(model, prompts, 1, 1))
            print(f"  repeat {rep + 1}/{a.repeats}: " + ", ".join(
                f"b{b} r1 {r1_tok[b][-1]:.0f} / HF {hf_tok[b][-1]:.0f} tok/s" for b in batches), flush=True)

    med = statistics.median
    print()
    print("| batch | r1.cpp tok/s | HF generate tok/s | ratio (r1 / HF) |")
    print("|---|---|---|---|")
    for b in batches:
        r, h = med(r1_tok[b]), med(hf_tok[b])
        print(f"| {b} | {r:.1f} | {h:.1f} | {r / h:.2f}x |")
    print()
    wb = info["decode_weight_bytes"]
    print(f"memory bandwidth ({a.threads} threads, 512 MiB arrays): copy {bw['copy_gbs']:.2f} GB/s "
          f"(read+write bytes), read {bw['read_gbs']:.2f} GB/s")
    print(f"weights read per decoded token (batch 1): {wb / 1e6:.1f} MB")
    if 1 in batches:
        d = med(r1_dec1)
        hf_dec = (a.new - 1) / (med([a.new / x for x in hf_tok[1]]) - med(hf_first))
        for name, g in (("copy", bw["copy_gbs"]), ("read", bw["read_gbs"])):
            bound = g * 1e9 / wb
            print(f"batch-1 decode bound from {name} bandwidth: {bound:.1f} tok/s; r1 decode {d:.1f} tok/s = "
                  f"{100 * d / bound:.0f}% of it; HF decode {hf_dec:.1f} tok/s = {100 * hf_dec / bound:.0f}%")


if __name__ == "__main__":
    sys.exit(main())
