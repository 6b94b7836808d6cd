"""Gradient flows side by side: gengrad.flow against SciPy, torchdiffeq and diffrax, in one process.

    python bench/flow.py [--problems a,b,...] [--budget 60] [--json FILE] [--quick] [--ensemble]

Every solver integrates theta' = -G(theta) of a ReLU network (relu'(0) = 0 in all of them) in
float64 and is held to one reference:
  - the reference is gengrad.flow at rtol 1e-12 (DOP853), itself checked against the h -> 0
    limit of explicit gradient descent (Richardson from h, h/2, h/4; no event logic at all):
    the agreement is printed with the limit's own error estimate;
  - SciPy's solve_ivp (RK45, DOP853; Radau where d is small enough for its finite-difference
    Jacobian) driven by Network.gradient, gengrad's compiled G (the fastest honest field);
  - torchdiffeq (dopri5, dopri8) with the field from torch.autograd (PyTorch's own threads);
  - diffrax (Dopri5, Tsit5) with jax.grad, the whole solve under jax.jit (compile time
    excluded and reported apart).
Each solver runs at several rtol (atol = rtol / 100); a run past --budget seconds is stopped.
--ensemble times instead 1000 flows of (1, 16, 1) nets on 64 points to t = 20 at rtol 1e-8 in one
gengrad.flow call with an Ensemble (across threads) against a Python loop of single flows, with
and without a busy neighbour process.
"Time at matched accuracy" is, for each accuracy, each solver's fastest run whose error of
theta(t_end) is within it; the ratio is the fastest peer's time over gengrad's (above 1: gengrad
is faster).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from run import neighbour  # bench/run.py, beside this script

import gengrad
from gengrad.files import write_atomically

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import flow_oracles  # noqa: E402  (tests/, for the problem type the oracles use)

RTOLS = (1e-4, 1e-6, 1e-8, 1e-10)
ACCURACIES = (1e-4, 1e-6, 1e-8)


@dataclass
class Problem(flow_oracles.Problem):
    euler_steps: int  # of the coarsest Euler run of the reference's check


def gaussian(widths, M, t_end, euler_steps):
    net = gengrad.Network(widths, "relu")
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(M, widths[0])), rng.normal(size=(M, widths[-1]))
    return Problem(f"{widths}@{M} gaussian", net, net.init(seed=0, scheme="torch"), X, Y, t_end, euler_steps)


def sine_grid():
    net = gengrad.Network((1, 16, 1), "relu")
    X = np.linspace(-1, 1, 64)[:, None]
    return Problem("(1, 16, 1)@64 sine grid", net, net.init(seed=0), X, np.sin(3 * X), 20.0, 8000)


def digits(loss):
    data = gengrad.datasets.load_digits()
    net = gengrad.Network((64, 32, 10), "relu", loss=loss)
    X = data.X_train[:200]
    labels = data.y_train[:200]
    Y = np.eye(10)[labels] if loss == "cross_entropy" else np.eye(10)[labels]
    return Problem(f"digits (64, 32, 10)@200 {loss}", net, net.init(seed=0, scheme="torch"), X, Y, 5.0, 4000)


PROBLEMS = {
    "1-16-1-grid": sine_grid,
    "1-16-1-gauss": lambda: gaussian((1, 16, 1), 64, 20.0, 8000),
    "1-64-64-1": lambda: gaussian((1, 64, 64, 1), 256, 1.0, 2000),
    "2-128-128-1": lambda: gaussian((2, 128, 128, 1), 1024, 0.05, 1000),
    "digits-se": lambda: digits("squared_error"),
    "digits-ce": lambda: digits("cross_entropy"),
}


class OutOfTime(Exception):
    pass


def run(solve, budget):
    """(theta(t_end) or None, field evaluations, seconds, note)."""
    start = time.perf_counter()
    try:
        theta, evaluations, note = solve(lambda: time.perf_counter() - start > budget)
    except OutOfTime as stop:
        return None, stop.args[0], time.perf_counter() - start, f"stopped after {budget:g} s"
    return theta, evaluations, time.perf_counter() - start, note


def gengrad_solver(p, rtol, method="auto"):
    def solve(_):
        r = gengrad.flow(p.net, p.theta0, p.X, p.Y, p.t_end, rtol=rtol, atol=rtol * 1e-2, save_steps=False,
                         method=method)
        return r.theta_final, r.n_gradient_evaluations, "" if r.success else r.message
    return solve


def counted_field(gradient, over):
    """theta' = -gradient(theta) as a right-hand side (t, theta) that counts its calls and stops
    the run once `over()` says the budget is spent; returns it and the count's cell."""
    calls = [0]

    def field(_, theta):
        calls[0] += 1
        if calls[0] % 100 == 0 and over():
            raise OutOfTime(calls[0])
        return -gradient(theta)
    return field, calls


def scipy_solver(p, rtol, method):
    from scipy.integrate import solve_ivp

    def solve(over):
        field, calls = counted_field(lambda theta: p.net.gradient(theta, p.X, p.Y), over)
        sol = solve_ivp(field, (0.0, p.t_end), p.theta0, method=method, rtol=rtol, atol=rtol * 1e-2)
        return sol.y[:, -1], calls[0], "" if sol.success else sol.message
    return solve


def network_risk(p, asarray, relu, log_softmax):
    """The risk of p's network as a function of theta, in a framework's arrays (torch, jax.numpy)."""
    X, Y = asarray(p.X), asarray(p.Y)
    layout = p.net.layout

    def risk(theta):
        h = X
        for k, (w, b, rows, cols) in enumerate(layout):
            h = h @ theta[w:w + rows * cols].reshape(rows, cols).T + theta[b:b + rows]
            if k + 1 < len(layout):
                h = relu(h)
        if p.net.loss == "cross_entropy":
            return -(Y * log_softmax(h)).sum(1).mean()
        return ((h - Y) ** 2).sum(1).mean()
    return risk


def torchdiffeq_solver(p, rtol, method):
    import torch
    from torchdiffeq import odeint
    risk = network_risk(p, torch.from_numpy, torch.relu, lambda h: torch.log_softmax(h, dim=1))

    def gradient(theta):
        with torch.enable_grad():
            theta = theta.detach().requires_grad_(True)
            return torch.autograd.grad(risk(theta), theta)[0]

    def solve(over):
        field, calls = counted_field(gradient, over)
        y0 = torch.from_numpy(p.theta0.copy())
        ys = odeint(field, y0, torch.tensor([0.0, p.t_end], dtype=torch.float64), rtol=rtol, atol=rtol * 1e-2,
                    method=method)
        return ys[-1].numpy(), calls[0], ""
    return solve


def diffrax_solver(p, rtol, method, compile_times):
    import diffrax
    import jax
    import jax.numpy as jnp
    jax.config.update("jax_enable_x64", True)
    risk = network_risk(p, jnp.asarray, jax.nn.relu, lambda h: jax.nn.log_softmax(h, axis=1))
    grad = jax.grad(risk)
    solver = {"Dopri5": diffrax.Dopri5, "Tsit5": diffrax.Tsit5}[method]()
    stages = 6  # new evaluations per step of both (FSAL)

    @jax.jit
    def integrate(y0):
        sol = diffrax.diffeqsolve(diffrax.ODETerm(lambda t, y, args: -grad(y)), solver, t0=0.0, t1=p.t_end,
                                  dt0=None, y0=y0, stepsize_controller=diffrax.PIDController(rtol=rtol,
                                                                                              atol=rtol * 1e-2),
                                  max_steps=200_000, saveat=diffrax.SaveAt(t1=True), throw=False)
        return sol.ys[-1], sol.stats["num_steps"], sol.result == diffrax.RESULTS.successful

    def solve(_):
        key = (p.name, method, rtol)
        if key not in compile_times:
            start = time.perf_counter()
            integrate(jnp.asarray(p.theta0))[0].block_until_ready()
            compile_times[key] = time.perf_counter() - start
        y, steps, ok = integrate(jnp.asarray(p.theta0))
        return np.asarray(y.block_until_ready()), int(steps) * stages, "" if bool(ok) else "max_steps reached"
    return solve


def available(module):
    try:
        __import__(module)
        return True
    except ImportError:
        return False


def euler_limit(p):
    """Richardson extrapolation of explicit gradient descent (Network.gradient) from n, 2n and
    4n steps, and the difference of the last two extrapolations (its error estimate)."""
    def euler(n):
        theta, h = p.theta0.copy(), p.t_end / n
        for _ in range(n):
            theta -= h * p.net.gradient(theta, p.X, p.Y)
        return theta
    a, b, c = (euler(p.euler_steps * f) for f in (1, 2, 4))
    return 2 * c - b, float(np.max(np.abs((2 * c - b) - (2 * b - a))))


def compare(p, budget, rtols, quick):
    print(f"\n## {p.name}: d = {p.net.dim}, t_end = {p.t_end:g}", flush=True)
    start = time.perf_counter()
    reference = gengrad.flow(p.net, p.theta0, p.X, p.Y, p.t_end, rtol=1e-12, atol=1e-14, save_steps=False,
                             method="dop853")
    print(f"reference: gengrad.flow DOP853 rtol 1e-12, {len(reference.events)} events "
          f"({reference.event_counts()['sliding-start']} sliding), {time.perf_counter() - start:.1f} s")
    euler, estimate = euler_limit(p)
    check = float(np.max(np.abs(euler - reference.theta_final)))
    print(f"Euler limit ({p.euler_steps}, x2, x4 steps): max |difference| {check:.1e}, its error estimate "
          f"{estimate:.1e}", flush=True)
    solvers = [("gengrad.flow", r, gengrad_solver(p, r)) for r in rtols]
    small = p.net.dim <= 600
    for method in ("RK45", "DOP853") + (("Radau",) if small else ()):
        solvers += [(f"SciPy {method}", r, scipy_solver(p, r, method)) for r in rtols[:3]]
    if available("torchdiffeq"):
        for method in ("dopri5", "dopri8"):
            solvers += [(f"torchdiffeq {method}", r, torchdiffeq_solver(p, r, method)) for r in rtols[:3]]
    compile_times: dict = {}
    if available("diffrax") and not quick:
        for method in ("Dopri5", "Tsit5"):
            solvers += [(f"diffrax {method}", r, diffrax_solver(p, r, method, compile_times)) for r in rtols[:3]]
    rows = []
    print("\n| solver | rtol | max error of theta(t_end) | field evaluations | wall time |")
    print("|---|---|---|---|---|")
    for name, rtol, solve in solvers:
        theta, evaluations, seconds, note = run(solve, budget)
        error = None if theta is None else float(np.max(np.abs(theta - reference.theta_final)))
        rows.append(dict(solver=name, rtol=rtol, error=error, evaluations=evaluations, seconds=seconds, note=note))
        shown = "—" if error is None else f"{error:.1e}"
        wall = f"{seconds * 1e3:.1f} ms" if seconds < 1 else f"{seconds:.1f} s"
        print(f"| {name} | {rtol:g} | {shown}{f' ({note})' if note else ''} | {evaluations:,} | {wall} |",
              flush=True)
    matched = matched_accuracy(rows)
    return dict(problem=p.name, dim=p.net.dim, t_end=p.t_end, events=len(reference.events),
                euler_check=check, euler_estimate=estimate, rows=rows, matched=matched,
                diffrax_compile_seconds={f"{k[1]} {k[2]:g}": v for k, v in compile_times.items()})


def matched_accuracy(rows):
    names = list(dict.fromkeys(r["solver"] for r in rows))
    print("\n| accuracy | " + " | ".join(names) + " | fastest peer / gengrad |")
    print("|---|" + "---|" * (len(names) + 1))
    table = {}
    for accuracy in ACCURACIES:
        best = {}
        for name in names:
            times = [r["seconds"] for r in rows if r["solver"] == name and r["error"] is not None
                     and r["error"] <= accuracy and not r["note"]]
            best[name] = min(times) if times else None
        peers = [t for n, t in best.items() if n != "gengrad.flow" and t is not None]
        ours = best["gengrad.flow"]
        ratio = (min(peers) / ours) if peers and ours else None
        table[accuracy] = dict(best=best, ratio=ratio)
        cells = " | ".join("—" if t is None else (f"{t * 1e3:.1f} ms" if t < 1 else f"{t:.1f} s")
                           for t in best.values())
        shown = "—" if ratio is None else f"{ratio:,.1f}×"
        if ours and not peers:
            shown = "no peer reaches it"
        print(f"| {accuracy:g} | {cells} | {shown} |")
    return {f"{k:g}": v for k, v in table.items()}


def ensemble_timing(n=1000):
    ensemble = gengrad.Ensemble((1, 16, 1), n, "relu")
    X = np.linspace(-1, 1, 64)[:, None]
    Y = np.sin(3 * X)
    thetas = ensemble.init(seed=0)
    rows = {}
    for label, busy in (("quiet", False), ("busy neighbour", True)):
        with neighbour(busy):
            start = time.perf_counter()
            loop = [gengrad.flow(ensemble.network, t, X, Y, 20.0, save_steps=False) for t in thetas]
            loop_seconds = time.perf_counter() - start
            start = time.perf_counter()
            together = gengrad.flow(ensemble, thetas, X, Y, 20.0, save_steps=False)
            ensemble_seconds = time.perf_counter() - start
        same = all(np.array_equal(a.theta_final, b.theta_final) for a, b in zip(loop, together))
        rows[label] = dict(loop=loop_seconds, ensemble=ensemble_seconds, speedup=loop_seconds / ensemble_seconds,
                           bitwise_equal=same)
        print(f"{n} x (1, 16, 1)@64 to t = 20, rtol 1e-8, {label}: loop of single flows {loop_seconds:.2f} s, "
              f"one Ensemble call {ensemble_seconds:.2f} s ({loop_seconds / ensemble_seconds:.2f}x; "
              f"bitwise equal: {same}; {gengrad.get_num_threads()} threads)", flush=True)
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", default=",".join(PROBLEMS), help=f"some of {', '.join(PROBLEMS)}")
    parser.add_argument("--budget", type=float, default=60.0, help="seconds after which a run is stopped")
    parser.add_argument("--quick", action="store_true", help="two rtols, no diffrax")
    parser.add_argument("--json", help="write the results to this file")
    parser.add_argument("--ensemble", action="store_true", help="time an ensemble of flows instead")
    args = parser.parse_args(argv)
    if args.ensemble:
        results = ensemble_timing()
        if args.json:
            write_atomically(args.json, lambda f: f.write(json.dumps(results, indent=1).encode()))
        return 0
    names = [n for n in args.problems.split(",") if n]
    unknown = set(names) - set(PROBLEMS)
    if unknown:
        parser.error(f"unknown problems {sorted(unknown)}; expected some of {', '.join(PROBLEMS)}")
    info = gengrad.build_info()
    print(f"gengrad {gengrad.__version__}, {info['compiler']}, kernels {info['isa']}, "
          f"{info['threads']} threads; numpy {np.__version__}")
    rtols = RTOLS[1:3] if args.quick else RTOLS
    results = [compare(PROBLEMS[n](), args.budget, rtols, args.quick) for n in names]
    if args.json:
        write_atomically(args.json, lambda f: f.write(json.dumps(results, indent=1).encode()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
