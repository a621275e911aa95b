#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets (fuzz/corpus/<target>/<sha1>) from the project's own
fixtures and configs. Standard library only; run from anywhere: python3 fuzz/make_seeds.py"""
import hashlib
import json
import pathlib
import random

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "fuzz" / "corpus"


def jsonl(rel):
    with open(ROOT / rel, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def write(target, seeds):
    d = OUT / target
    d.mkdir(parents=True, exist_ok=True)
    for old in d.iterdir():
        old.unlink()
    for s in seeds:
        b = s if isinstance(s, bytes) else s.encode("utf-8", "surrogatepass")
        (d / hashlib.sha1(b).hexdigest()).write_bytes(b)
    print(f"{target}: {len(set(seeds))} seeds")


def math_seeds():
    # gold \n completion
    seeds = [f"{c['gold']}\n\\boxed{{{c['pred']}}}" for c in jsonl("tests/fixtures/rewards/math_verify_cases.jsonl")]
    rng = random.Random(7)
    agree = jsonl("tests/fixtures/rewards/math_agreement.jsonl")
    seeds += [f"{c['gold']}\n{c['completion']}" for c in rng.sample(agree, 200)]
    seeds += ["10^{10^{20}}\n\\boxed{10^{10^{21}}}", "10000000!\n\\boxed{10000000!+1}",
              "0\nThe answer is $10^{-10^{20}}$", "1\n" + "a1" * 2000, "x\n<answer>\\frac{\\sqrt{2}}{x^2}</answer>",
              "#### 72\nThe final answer is 72 dollars per day."]
    return seeds


def tokenizer_seeds():
    rng = random.Random(11)
    texts = [c["text"] for c in jsonl("tests/fixtures/tokenizer/corpus.jsonl")][:120]
    texts += [c["text"] for c in rng.sample(jsonl("tests/fixtures/tokenizer/random.jsonl"), 60)]
    texts += ["<|im_start|>user\nhi<|im_end|>\n", "<think>\n</think>\n<answer>42</answer>", "\u00e9\u0301 \ufb01 \u212b"]
    seeds = []
    for i, t in enumerate(texts):
        mode = (i % 2) * 8  # bit 3: special tokens parsed
        seeds.append(bytes([i % 3 + mode]) + t.encode("utf-8", "surrogatepass"))
    seeds.append(b"\x00\xff\xfe\xc0\x80 invalid \xed\xa0\x80 utf-8 \xf4\x90\x80\x80")
    return seeds


def config_seeds():
    files = sorted((ROOT / "configs").glob("**/*.toml"))
    overrides = ["", "train.lr=1e-5", "rewards.checkers=[]", "model.path=/models/q", "sampling.temperature=\"hot\""]
    return [f"{overrides[i % len(overrides)]}\n{f.read_text()}" for i, f in enumerate(files)] + [
        "\n[train]\nlr = -1\n", "\n[rewards]\n[[rewards.checkers]]\nchecker = \"math\"\nweight = 1e309\n",
        "run.seed=9\n[run]\nname = \"\u00e9\"\n"]


def http(method, target, body="", headers=()):
    head = [f"{method} {target} HTTP/1.1", "Host: x"] + list(headers)
    if body or method == "POST":
        head += ["Content-Type: application/json", f"Content-Length: {len(body.encode())}"]
    return "\r\n".join(head) + "\r\n\r\n" + body


def service_seeds():
    sample = {"completion": "The answer is \\boxed{4}.", "reference": {"answer": "4"}}
    return [
        http("GET", "/healthz"), http("GET", "/healthz?probe=1"), http("HEAD", "/healthz"), http("GET", "/metrics"),
        http("POST", "/v1/score", json.dumps({"samples": [sample]})),
        http("POST", "/v1/score?trace=1", json.dumps({"samples": [sample, sample], "checker": "math"})),
        http("POST", "/v1/score", json.dumps({"samples": [dict(sample, completion_tokens=12)], "checker": "format"})),
        http("POST", "/v1/score", json.dumps({"samples": [dict(sample, completion_tokens=-1)]})),
        http("POST", "/v1/score", json.dumps({"samples": [], "checker": "nope"})),
        http("POST", "/v1/score", "{\"samples\": [{\"completion\": 5}]"),
        http("PUT", "/v1/score", "{}"), http("GET", "/nope"),
        "POST /v1/score HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        "d\r\n{\"samples\":[]\r\n1\r\n}\r\n0\r\n\r\n",
        "GET / HTTP/1.0\r\n\r\n", "garbage\r\n\r\n",
    ]


if __name__ == "__main__":
    write("fuzz_math", math_seeds())
    write("fuzz_tokenizer", tokenizer_seeds())
    write("fuzz_config", config_seeds())
    write("fuzz_service", service_seeds())
