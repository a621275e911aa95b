#!/usr/bin/env python3
"""Encode throughput, one thread: r1.cpp's tokenizer vs Hugging Face tokenizers (Python binding).

Same corpus, same run, same tokenizer files. Both sides cache pre-tokens, so each is measured twice
the same way: the first pass after loading the tokenizer (cold cache, timed on its own; loading is not
timed), then the median of --repeats warm passes. HF is pinned to one thread
(RAYON_NUM_THREADS=1, TOKENIZERS_PARALLELISM=false, set before import) and measured two ways:
`encode` on each text (what a caller holding one prompt does) and `encode_batch` over all texts
(no per-call Python overhead), each on its own freshly loaded Tokenizer so that both have a cold first
pass. The ratio is taken against the faster of the two, warm and cold apart. r1's cold pass is the
`cold_s` field of bench_tokenizer's JSON; a bench_tokenizer that does not print it (the current
bench/bench_tokenizer.cpp times only the warm passes) leaves the cold r1 column as "n/a". The script
also checks that both produce the same number of tokens.

  scripts/ref-python bench/bench_tokenizer.py --bin build-tok/bench/bench_tokenizer
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

os.environ["RAYON_NUM_THREADS"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
from tokenizers import Tokenizer  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("R1_SHARED_DIR", ROOT.parent / "shared"))


def corpus_texts():
    texts = []
    for name in ("train", "test"):
        with open(SHARED / "data" / "gsm8k" / f"{name}.jsonl", encoding="utf-8") as f:
            for line in f:
                r = json.loads(line)
                texts.append(r["question"] + "\n" + r["answer"])
    with open(SHARED / "data" / "humaneval" / "HumanEval.jsonl", encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            texts.append(r["prompt"] + r["canonical_solution"] + r["test"])
    # Multilingual and emoji lines from the parity fixture (not GSM8K/HumanEval), for script variety.
    with open(ROOT / "tests" / "fixtures" / "tokenizer" / "random.jsonl", encoding="utf-8") as f:
        for line in f:
            texts.append(json.loads(line)["text"])
    return texts


def load_hf(path, parse):
    tok = Tokenizer.from_file(str(path / "tokenizer.json"))
    tok.encode_special_tokens = not parse
    return tok


def bench_hf(path, texts, repeats, parse):
    """(tokens, cold encode s, cold encode_batch s, warm encode median s, warm encode_batch median s)."""
    # The first pass of each way on its own fresh Tokenizer (empty cache), as r1's first pass after load.
    tok = load_hf(path, parse)
    t = time.perf_counter()
    tokens_one = sum(len(tok.encode(s, add_special_tokens=False).ids) for s in texts)
    cold_one = time.perf_counter() - t
    tok = load_hf(path, parse)
    t = time.perf_counter()
    tokens = sum(len(e.ids) for e in tok.encode_batch(texts, add_special_tokens=False))
    cold_batch = time.perf_counter() - t
    if tokens_one != tokens:
        sys.exit(f"{path.name}: encode and encode_batch disagree: {tokens_one} vs {tokens} tokens")
    one, batch = [], []
    for _ in range(repeats):  # warm: this Tokenizer's cache was filled by its cold pass
        t = time.perf_counter()
        for s in texts:
            tok.encode(s, add_special_tokens=False)
        one.append(time.perf_counter() - t)
        t = time.perf_counter()
        tok.encode_batch(texts, add_special_tokens=False)
        batch.append(time.perf_counter() - t)
    return tokens, cold_one, cold_batch, statistics.median(one), statistics.median(batch)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=str(ROOT / "build-tok" / "bench" / "bench_tokenizer"))
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--tokenizers", default="qwen3,deepseek-v3")
    args = ap.parse_args()

    texts = corpus_texts()
    nbytes = sum(len(t.encode("utf-8")) for t in texts)
    print(f"corpus: {len(texts)} texts, {nbytes / 1e6:.2f} MB (GSM8K train+test, HumanEval, random.jsonl)")
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False, encoding="utf-8") as f:
        for t in texts:
            f.write(json.dumps({"text": t}, ensure_ascii=False) + "\n")
        corpus = f.name
    rows = []
    try:
        for name in args.tokenizers.split(","):
            path = SHARED / "tokenizers" / name
            for parse in (False, True):
                tokens, cold_one, cold_batch, one, batch = bench_hf(path, texts, args.repeats, parse)
                cmd = [args.bin, "--tokenizer", str(path), "--corpus", corpus, "--repeats", str(args.repeats)]
                if parse:
                    cmd.append("--parse-special")
                r1 = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
                if r1["tokens"] != tokens:
                    sys.exit(f"{name}: token counts differ: r1 {r1['tokens']} vs tokenizers {tokens}")
                r1_warm = nbytes / statistics.median(r1["secs"]) / 1e6  # the median as on the HF side
                r1_cold = nbytes / r1["cold_s"] / 1e6 if r1.get("cold_s") else None
                hf_best = nbytes / min(one, batch) / 1e6
                hf_best_cold = nbytes / min(cold_one, cold_batch) / 1e6
                rows.append((name, "parse" if parse else "as-text", r1_warm, r1_cold, nbytes / one / 1e6,
                             nbytes / cold_one / 1e6, nbytes / batch / 1e6, nbytes / cold_batch / 1e6,
                             r1_warm / hf_best, r1_cold / hf_best_cold if r1_cold else None, tokens))
    finally:
        os.unlink(corpus)
    print(f"MB/s: warm = median of {args.repeats} passes after the first; cold = the first pass after loading")
    print("| tokenizer | special tokens | r1.cpp MB/s warm | r1.cpp MB/s cold | HF encode MB/s warm | HF encode MB/s cold "
          "| HF encode_batch MB/s warm | HF encode_batch MB/s cold | ratio warm (r1 / best HF) | ratio cold | tokens |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    na = lambda v, f: "n/a" if v is None else f.format(v)  # noqa: E731
    for name, mode, r1, r1c, one, onec, batch, batchc, ratio, ratioc, tokens in rows:
        print(f"| {name} | {mode} | {r1:.1f} | {na(r1c, '{:.1f}')} | {one:.1f} | {onec:.1f} | {batch:.1f} | {batchc:.1f} "
              f"| {ratio:.2f}x | {na(ratioc, '{:.2f}x')} | {tokens} |")
    if any(r[3] is None for r in rows):
        print("r1 cold: n/a: this bench_tokenizer does not time its first pass (no \"cold_s\" in its JSON output)")


if __name__ == "__main__":
    main()
