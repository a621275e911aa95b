#!/usr/bin/env python3
"""Math checks per second, r1.cpp vs Math-Verify, on the same inputs in one run, single thread.

Inputs: tests/fixtures/rewards/math_agreement.jsonl (GSM8K answers and generated forms; gold and a
completion per line). Math-Verify runs parse(gold), parse(completion), verify() per check, as
TRL/open-r1 do; r1 runs its math checker (extraction, parse, equivalence) via bench_math.
Both sides run the same --repeats timed passes over all inputs (bench_math takes the count as its
second argument) and report the best (fastest) pass. Prints checks/s for both, the ratio and the
agreement rate of the verdicts.

  scripts/ref-python bench/bench_math.py --bin build-rew/bench/bench_math
"""
import argparse
import json
import logging
import subprocess
import time
from pathlib import Path

logging.disable(logging.CRITICAL)
from math_verify import parse, verify  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=str(ROOT / "build" / "bench" / "bench_math"))
    ap.add_argument("--input", default=str(ROOT / "tests" / "fixtures" / "rewards" / "math_agreement.jsonl"))
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    if args.repeats < 1:
        ap.error("--repeats must be >= 1")
    rows = [json.loads(l) for l in open(args.input) if l.strip()]

    best, mv_verdicts = 1e30, []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        mv_verdicts = [bool(verify(parse(r["gold"]), parse(r["completion"]))) for r in rows]
        best = min(best, time.perf_counter() - t0)
    mv_rate = len(rows) / best

    r1 = json.loads(subprocess.run([args.bin, args.input, str(args.repeats)], check=True,
                                   capture_output=True, text=True).stdout)
    agree = sum(a == b for a, b in zip(mv_verdicts, r1["verdicts"]))
    print(json.dumps({"checks": len(rows), "repeats": args.repeats, "math_verify_checks_per_s": round(mv_rate, 1),
                      "r1_checks_per_s": round(r1["checks_per_s"], 1),
                      "speedup": round(r1["checks_per_s"] / mv_rate, 1),
                      "agreement": round(agree / len(rows), 4)}))


if __name__ == "__main__":
    main()
