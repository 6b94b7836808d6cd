"""Gradient flow: gengrad.flow against SciPy's solve_ivp driven by the NumPy reference gradient.

    python bench/flow.py [--t-end 50] [--budget 120] [--problems relu-sliding,...] [--json FILE]

Problems (MATH.md §7, peers.md §4), a (1,16,1) network on 64 points from t = 0 to --t-end:
  relu-sliding    x_m, y_m ~ N(0, 1) (seed 0), nn.Linear's init (seed 0): kinks stick to data
                  points, so the flow slides (Filippov) on several surfaces at once;
  relu-crossings  x on a grid of [-1, 1], y = sin(3x), He-uniform init (seed 0): crossings only;
  tanh            the data of relu-crossings with tanh: a smooth field.
The reference solution is the independent piecewise integrator of tests/flow_reference.py
(NumPy gradients on the frozen activation pattern, SciPy DOP853 at rtol 1e-13 on each smooth
piece, textbook multilinear Filippov sliding) for ReLU, and SciPy DOP853 at rtol 1e-13 for
tanh. For each run: the max-norm error of theta(t_end), gradient evaluations, wall time, and
the speed-up over SciPy RK45 at rtol 1e-8. A SciPy run that exceeds --budget seconds is stopped
and reported with the time it reached; speed-ups against it are then lower bounds.

Last, explicit gradient descent theta_{n+1} = theta_n - h G(theta_n) against the flow at
t = 5: the error is O(h) (the fitted slope of log error against log h is printed).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from scipy.integrate import solve_ivp

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import gengrad  # noqa: E402
from flow_reference import piecewise_flow  # noqa: E402
from gengrad import reference  # noqa: E402


class OutOfTime(Exception):
    pass


PROBLEMS = ("relu-sliding", "relu-crossings", "tanh")


def problem(name: str):
    net = gengrad.Network((1, 16, 1), "tanh" if name == "tanh" else "relu")
    if name == "relu-sliding":
        rng = np.random.default_rng(0)
        return net, net.init(seed=0, scheme="torch"), rng.normal(size=(64, 1)), rng.normal(size=(64, 1))
    X = np.linspace(-1, 1, 64)[:, None]
    return net, net.init(seed=0, scheme="he_uniform"), X, np.sin(3 * X)


def reference_solution(net, theta0, X, Y, t_end):
    start = time.perf_counter()
    if net.activation.piecewise_linear:
        theta, events = piecewise_flow(net, theta0, X, Y, t_end)
    else:
        theta = scipy_run(net, theta0, X, Y, t_end, "DOP853", 1e-13, 1e-15, np.inf)["theta"]
        events = []
    return theta, len(events), time.perf_counter() - start


def scipy_run(net, theta0, X, Y, t_end, method, rtol, atol, budget):
    calls = [0]
    start = time.perf_counter()

    def field(t, theta):
        calls[0] += 1
        if calls[0] % 500 == 0 and time.perf_counter() - start > budget:
            raise OutOfTime(t)
        return -reference.generalized_gradient(theta, net.widths, net.activation, X, Y)
    try:
        sol = solve_ivp(field, (0.0, t_end), theta0, method=method, rtol=rtol, atol=atol)
        theta, note, stopped = sol.y[:, -1], "" if sol.success else sol.message, False
    except OutOfTime as stop:
        theta, stopped = None, True
        note = f"stopped after {budget:g} s, at t = {float(stop.args[0]):.3g}"
    return dict(theta=theta, evaluations=calls[0], seconds=time.perf_counter() - start,
                note=note, stopped=stopped)


def gengrad_run(net, theta0, X, Y, t_end, rtol, atol, repeats=5):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = gengrad.flow(net, theta0, X, Y, t_end, rtol=rtol, atol=atol, save_steps=False)
        times.append(time.perf_counter() - start)
    return dict(theta=result.theta_final, evaluations=result.n_gradient_evaluations,
                seconds=float(np.median(times)), events=len(result.events),
                forward=result.n_forward_passes, steps=result.n_steps,
                sliding=result.event_counts()["sliding-start"],
                note="" if result.success else result.message, stopped=False)


def compare(name, t_end, budget):
    net, theta0, X, Y = problem(name)
    theta_ref, n_events, ref_seconds = reference_solution(net, theta0, X, Y, t_end)
    print(f"\n## {name}: widths (1,16,1), 64 points, t_end = {t_end:g}")
    print(f"reference solution: {ref_seconds:.1f} s"
          + (f", {n_events} switching events" if n_events else ""))
    rows = []
    for method, rtol in (("RK45", 1e-6), ("RK45", 1e-8), ("DOP853", 1e-8), ("Radau", 1e-8)):
        run = scipy_run(net, theta0, X, Y, t_end, method, rtol, rtol * 1e-2, budget)
        rows.append(dict(solver=f"SciPy {method}", rtol=rtol, **run))
        print(f"  ... SciPy {method} rtol {rtol:g}: {run['seconds']:.1f} s", flush=True)
    for rtol in (1e-6, 1e-8, 1e-10, 1e-12):
        rows.append(dict(solver="gengrad.flow (DOP853 + events)", rtol=rtol,
                         **gengrad_run(net, theta0, X, Y, t_end, rtol, rtol * 1e-2)))
    anchor = next(r for r in rows if r["solver"] == "SciPy RK45" and r["rtol"] == 1e-8)
    print("\n| solver | rtol | max error of theta(t_end) | gradient evaluations | wall time | "
          "speed-up vs RK45 1e-8 |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        r["error"] = None if r["theta"] is None else float(np.max(np.abs(r["theta"] - theta_ref)))
        error = "—" if r["error"] is None else f"{r['error']:.1e}"
        bound = ">" if anchor["stopped"] and not r["stopped"] else ""
        speedup = "—" if r["stopped"] and r is not anchor else \
            f"{bound}{anchor['seconds'] / r['seconds']:,.0f}×"
        wall = f"{r['seconds'] * 1e3:.1f} ms" if r["seconds"] < 1 else f"{r['seconds']:.1f} s"
        note = f" ({r['note']})" if r["note"] else ""
        print(f"| {r['solver']} | {r['rtol']:g} | {error}{note} | {r['evaluations']:,} | {wall} | "
              f"{speedup} |")
        r.pop("theta")
    return dict(problem=name, t_end=t_end, reference_seconds=ref_seconds,
                reference_events=n_events, rows=rows)


def gradient_descent(name, t_end=5.0):
    """max |theta_GD(t_end) - theta(t_end)| for steps h = t_end / n; the order is fitted on the
    steps h <= 0.05 (the larger ones are outside the asymptotic range, or unstable)."""
    net, theta0, X, Y = problem(name)
    exact = gengrad.flow(net, theta0, X, Y, t_end, rtol=1e-13, atol=1e-15).theta_final
    hs, errors = [], []
    for n in (25, 50, 100, 200, 400, 800, 1600):
        theta = theta0.copy()
        h = t_end / n
        for _ in range(n):
            theta -= h * net.gradient(theta, X, Y)
        hs.append(h)
        errors.append(float(np.max(np.abs(theta - exact))))
    small = np.array(hs) <= 0.05
    slope = float(np.polyfit(np.log(np.array(hs)[small]), np.log(np.array(errors)[small]), 1)[0])
    print(f"\n## explicit gradient descent vs the flow, {name}, t = {t_end:g}")
    print("| h | " + " | ".join(f"{h:.4g}" for h in hs) + " |")
    print("|---|" + "---|" * len(hs))
    print("| max error | " + " | ".join(f"{e:.2e}" for e in errors) + " |")
    print(f"fitted order (slope of log error vs log h, h <= 0.05): {slope:.3f}")
    return dict(problem=name, t_end=t_end, h=hs, error=errors, slope=slope)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--t-end", type=float, default=50.0)
    parser.add_argument("--budget", type=float, default=120.0,
                        help="seconds after which a SciPy run is stopped")
    parser.add_argument("--problems", default=",".join(PROBLEMS),
                        help=f"comma-separated subset of {', '.join(PROBLEMS)}")
    parser.add_argument("--json", help="write the results to this file")
    args = parser.parse_args(argv)
    info = gengrad.build_info()
    print(f"gengrad {gengrad.__version__}, {info['compiler']}, kernels {info['isa']}; "
          f"numpy {np.__version__}")
    names = [name for name in args.problems.split(",") if name]
    unknown = set(names) - set(PROBLEMS)
    if unknown:
        parser.error(f"unknown problems {sorted(unknown)}; expected some of {PROBLEMS}")
    results = dict(flows=[compare(name, args.t_end, args.budget) for name in names],
                   gradient_descent=[gradient_descent(name) for name in names])
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
