#!/opt/r1-ref/bin/python
"""Encode throughput, one thread: r1.cpp's tokenizer vs Hugging Face tokenizers (Python binding).

Same corpus, same run, same tokenizer files; median of --repeats timed passes after one warm-up pass
each (both sides cache pre-tokens, so both are measured warm). HF is pinned to one thread
(RAYON_NUM_THREADS=1, TOKENIZERS_PARALLELISM=false, set before import) and measured two ways:
`encode` on each text (what a caller holding one prompt does) and `encode_batch` over all texts
(no per-call Python overhead). The ratio is taken against the faster of the two. The script also
checks that both produce the same number of tokens.

  /opt/r1-ref/bin/python bench/bench_tokenizer.py --bin build-tok/bench/bench_tokenizer
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


def bench_hf(path, texts, repeats, parse):
    tok = Tokenizer.from_file(str(path / "tokenizer.json"))
    tok.encode_special_tokens = not parse
    tokens = sum(len(e.ids) for e in tok.encode_batch(texts, add_special_tokens=False))  # warm-up
    one, batch = [], []
    for _ in range(repeats):
        t = time.perf_counter()
        for s in texts:
            tok.encode(s, add_special_tokens=False)
        one.append(time.perf_counter() - t)
        t = time.perf_counter()
        tok.encode_batch(texts, add_special_tokens=False)
        batch.append(time.perf_counter() - t)
    return tokens, statistics.median(one), statistics.median(batch)


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
                tokens, one, batch = bench_hf(path, texts, args.repeats, parse)
                cmd = [args.bin, "--tokenizer", str(path), "--corpus", corpus, "--repeats", str(args.repeats)]
                if parse:
                    cmd.append("--parse-special")
                r1 = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
                if r1["tokens"] != tokens:
                    sys.exit(f"{name}: token counts differ: r1 {r1['tokens']} vs tokenizers {tokens}")
                hf_best = nbytes / min(one, batch) / 1e6
                rows.append((name, "parse" if parse else "as-text", r1["mb_s"], nbytes / one / 1e6,
                             nbytes / batch / 1e6, r1["mb_s"] / hf_best, tokens))
    finally:
        os.unlink(corpus)
    print("| tokenizer | special tokens | r1.cpp MB/s | HF encode MB/s | HF encode_batch MB/s | ratio (r1 / best HF) | tokens |")
    print("|---|---|---|---|---|---|---|")
    for name, mode, r1, one, batch, ratio, tokens in rows:
        print(f"| {name} | {mode} | {r1:.1f} | {one:.1f} | {batch:.1f} | {ratio:.2f}x | {tokens} |")


if __name__ == "__main__":
    main()
