"""The large random sweep of gengrad.flow against its independent oracles (tests/flow_oracles.py).

    python bench/flow_sweep.py [--seeds 0:1000] [--rtols 1e-6,1e-8,1e-10] [--euler 20] [--json FILE]

For every seed a random problem (1 to 3 hidden layers, 1- to 3-D inputs, up to 256 samples,
squared error or cross-entropy, relu, leaky_relu, abs or hardtanh, a quarter with small integer
data that start units on kinks) is integrated at each rtol and replayed by the oracle; a run
that stops with success=False is counted with its reason. --euler N holds the first N problems
with continuous data and at most 32 samples to the Euler limit as well. tests/test_flow_sweep.py
runs a subset of this in CI.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import gengrad  # noqa: E402
from flow_oracles import euler_limit, random_problem, replay  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0:1000", help="first:last seed")
    parser.add_argument("--rtols", default="1e-6,1e-8,1e-10")
    parser.add_argument("--euler", type=int, default=0, help="problems also held to the Euler limit")
    parser.add_argument("--json", help="write the results to this file")
    args = parser.parse_args(argv)
    first, last = (int(s) for s in args.seeds.split(":"))
    rtols = [float(r) for r in args.rtols.split(",")]
    failures, violations, runs, seconds = Counter(), [], 0, 0.0
    for seed in range(first, last):
        problem = random_problem(seed)
        for rtol in rtols:
            start = time.perf_counter()
            result = gengrad.flow(problem.net, problem.theta0, problem.X, problem.Y, problem.t_end, rtol=rtol,
                                  atol=rtol * 1e-2, dense_output=True)
            seconds += time.perf_counter() - start
            runs += 1
            if not result.success:
                reason = result.message.split(" at t")[0].split(":")[0]
                failures[reason] += 1
                print(f"failed   {problem.name} rtol {rtol:g}: {result.message}", flush=True)
                continue
            found = replay(problem, result, rtol)
            if found:
                violations.append(dict(problem=problem.name, rtol=rtol, first=found[0]))
                print(f"VIOLATED {problem.name} rtol {rtol:g}: {found[0]}", flush=True)
    euler = []
    seed = first
    while len(euler) < args.euler:
        problem = random_problem(seed, max_samples=32, integer=False)
        seed += 1
        result = gengrad.flow(problem.net, problem.theta0, problem.X, problem.Y, problem.t_end, rtol=1e-10,
                              atol=1e-12)
        if not result.success or not result.events:
            continue
        expected, estimate = euler_limit(problem, 2000)
        error = float(np.max(np.abs(result.theta_final - expected)))
        euler.append(dict(problem=problem.name, error=error, estimate=estimate))
        print(f"Euler    {problem.name}: |difference| {error:.1e}, the limit's error estimate {estimate:.1e}",
              flush=True)
    print(f"\n{last - first} problems, {runs} runs ({seconds:.1f} s in gengrad.flow): "
          f"{len(violations)} replay violations, {sum(failures.values())} stopped with a reason")
    for reason, count in failures.most_common():
        print(f"  {count} x {reason}")
    if args.json:
        Path(args.json).write_text(json.dumps(dict(violations=violations, failures=dict(failures), euler=euler),
                                              indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
