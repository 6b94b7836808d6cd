"""Side-by-side CPU timings: gengrad against PyTorch eager and JAX jit in one process.

Each case times one risk-and-gradient evaluation of the mean squared error (the sum over
outputs of (z - y)^2, averaged over samples) of a ReLU MLP and reports medians and ratios
(peer time / gengrad time: above 1 means gengrad is faster), the achieved GFLOP/s and the
fraction of the machine's measured matrix-multiply rate.

    python bench/run.py [--dtype float32|float64] [--json FILE] [--plot FILE] [--quick]
                        [--only cases,ensemble,overhead,sweep,busy]

"busy" times the BUSY_CASES quiet and with one other process spinning on a core (a shared
machine): gengrad with its default threads and with one, PyTorch and JAX with theirs.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager

import numpy as np

import gengrad
from gengrad.files import write_atomically

CASES = [
    ((1, 16, 16, 1), 256),
    ((8, 32, 32, 1), 1024),
    ((64, 128, 128, 10), 256),
    ((64, 256, 256, 256, 10), 1024),
    ((784, 512, 512, 10), 1024),
]
ENSEMBLE = ((1, 32, 32, 1), 1024, 256)  # widths, networks, samples
BUSY_CASES = [
    ((3, 64, 64, 64, 1), 512),
    ((64, 64, 10), 1347),  # the shape of scikit-learn's digits
    ((64, 256, 256, 256, 10), 1024),
    ((64, 256, 256, 10), 2048),
]
SWEEP_WIDTHS = [16, 32, 64, 128, 256, 512]
SWEEP_BATCHES = [64, 256, 1024, 4096]


def median_seconds(fn, repeats: int = 7, budget: float = 0.2) -> float:
    """Median over `repeats` of the mean time of a run of calls lasting about `budget` s."""
    fn()
    start, calls = time.perf_counter(), 0
    while time.perf_counter() - start < budget / 4 or calls < 2:
        fn()
        calls += 1
    per_call = (time.perf_counter() - start) / calls
    n = max(1, int(budget / per_call))
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(n):
            fn()
        samples.append((time.perf_counter() - start) / n)
    return statistics.median(samples)


def flops(widths, M) -> float:
    """Multiply-adds x 2 of forward, backward and weight-gradient products."""
    return 6.0 * M * sum(a * b for a, b in zip(widths, widths[1:]))


def problem(widths, M, dtype, seed=0):
    net = gengrad.Network(widths, "relu")
    rng = np.random.default_rng(seed)
    theta = net.init(seed, dtype)
    X = rng.normal(size=(M, widths[0])).astype(dtype)
    Y = rng.normal(size=(M, widths[-1])).astype(dtype)
    return net, theta, X, Y


# --- gengrad and the peers: each returns a callable doing one evaluation, or None ----------

def gengrad_case(widths, M, dtype):
    net, theta, X, Y = problem(widths, M, dtype)
    out = np.empty_like(theta)
    return lambda: net.risk_and_gradient(theta, X, Y, out=out)


def _torch():
    try:
        import torch
    except ImportError:
        return None
    return torch


def _jax():
    try:
        import jax
    except ImportError:
        return None
    return jax


def torch_case(widths, M, dtype):
    torch = _torch()
    if torch is None:
        return None
    net, theta, X, Y = problem(widths, M, dtype)
    layers = []
    for k, (W, b) in enumerate(net.layers(theta)):
        linear = torch.nn.Linear(W.shape[1], W.shape[0]).to(getattr(torch, np.dtype(dtype).name))
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(W))
            linear.bias.copy_(torch.from_numpy(b))
        layers += [linear] + ([torch.nn.ReLU()] if k + 1 < net.n_layers else [])
    model = torch.nn.Sequential(*layers)
    Xt, Yt = torch.from_numpy(X), torch.from_numpy(Y)

    def step():
        model.zero_grad(set_to_none=True)
        loss = ((model(Xt) - Yt) ** 2).sum(dim=1).mean()
        loss.backward()
        return loss.item()

    return step


def _jax_risk(jax):
    import jax.numpy as jnp

    def risk(params, X, Y):
        h = X
        for k, (W, b) in enumerate(params):
            h = h @ W.T + b
            if k + 1 < len(params):
                h = jax.nn.relu(h)
        return jnp.mean(jnp.sum((h - Y) ** 2, axis=1))

    return risk


def jax_case(widths, M, dtype):
    jax = _jax()
    if jax is None:
        return None
    jax.config.update("jax_enable_x64", dtype == np.float64)
    net, theta, X, Y = problem(widths, M, dtype)
    params = [(jax.numpy.asarray(W), jax.numpy.asarray(b)) for W, b in net.layers(theta)]
    grad = jax.jit(jax.value_and_grad(_jax_risk(jax)))
    Xj, Yj = jax.numpy.asarray(X), jax.numpy.asarray(Y)
    return lambda: jax.block_until_ready(grad(params, Xj, Yj))


def ensemble_problem(dtype):
    widths, n, M = ENSEMBLE
    ens = gengrad.Ensemble(widths, n, "relu")
    thetas = ens.init(0, dtype)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(M, widths[0])).astype(dtype)
    Y = np.sin(X).astype(dtype)
    return ens, thetas, X, Y


def gengrad_ensemble(dtype):
    ens, thetas, X, Y = ensemble_problem(dtype)
    out = np.empty_like(thetas)
    return lambda: ens.risk_and_gradient(thetas, X, Y, out=out)


def torch_ensemble(dtype):
    """Batched matrix products over the networks (torch.bmm), one autograd graph."""
    torch = _torch()
    if torch is None:
        return None
    ens, thetas, X, Y = ensemble_problem(dtype)
    params = []
    for k in range(ens.network.n_layers):
        W = np.stack([ens.network.layers(t)[k][0] for t in thetas])
        b = np.stack([ens.network.layers(t)[k][1] for t in thetas])
        params += [torch.tensor(W, requires_grad=True), torch.tensor(b[:, None, :], requires_grad=True)]
    Xt = torch.from_numpy(X).expand(ens.n, *X.shape)
    Yt = torch.from_numpy(Y).expand(ens.n, *Y.shape)

    def step():
        for p in params:
            p.grad = None
        h = Xt
        for k in range(0, len(params), 2):
            h = torch.baddbmm(params[k + 1], h, params[k].transpose(1, 2))
            if k + 2 < len(params):
                h = torch.relu(h)
        ((h - Yt) ** 2).sum(dim=2).mean(dim=1).sum().backward()

    return step


def jax_ensemble(dtype):
    jax = _jax()
    if jax is None:
        return None
    jax.config.update("jax_enable_x64", dtype == np.float64)
    ens, thetas, X, Y = ensemble_problem(dtype)
    params = [(jax.numpy.asarray(np.stack([ens.network.layers(t)[k][0] for t in thetas])),
               jax.numpy.asarray(np.stack([ens.network.layers(t)[k][1] for t in thetas])))
              for k in range(ens.network.n_layers)]
    grad = jax.jit(jax.vmap(jax.value_and_grad(_jax_risk(jax)), in_axes=(0, None, None)))
    Xj, Yj = jax.numpy.asarray(X), jax.numpy.asarray(Y)
    return lambda: jax.block_until_ready(grad(params, Xj, Yj))


PEER_CASES = {"torch": torch_case, "jax": jax_case}
PEER_ENSEMBLES = {"torch": torch_ensemble, "jax": jax_ensemble}


@contextmanager
def neighbour(busy: bool = True):
    """One other process spinning on a core while the block runs, as on a shared machine."""
    process = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
    try:
        time.sleep(0.2 if busy else 0)  # let it start spinning
        yield
    finally:
        if process is not None:
            process.kill()
            process.wait()


def on_one_thread(fn):
    def call():
        before = gengrad.get_num_threads()
        gengrad.set_num_threads(1)
        try:
            return fn()
        finally:
            gengrad.set_num_threads(before)
    return call


def busy_rows(single, budget):
    """Each BUSY_CASE quiet and beside a spinning process; ratios are peer time / gengrad's."""
    print(f"\nquiet and with a busy neighbour (gengrad: {gengrad.get_num_threads()} threads, and 1)")
    print(f"{'case':>30} {'load':>6} {'gengrad':>10} {'1 thread':>10} {'÷1 thr':>6} {'torch':>10} {'ratio':>6} "
          f"{'jax':>10} {'ratio':>6}")
    rows = []
    for widths, M in BUSY_CASES:
        fns = single(widths, M)
        fns["gengrad_1_thread"] = on_one_thread(fns["gengrad"])
        for busy in (False, True):
            with neighbour(busy):
                timed = {name: median_seconds(fn, budget=budget) for name, fn in fns.items() if fn is not None}
            row = {"case": f"{widths} @{M}", "busy": busy, **{f"{k}_s": v for k, v in timed.items()}}
            row["default_over_1_thread"] = timed["gengrad"] / timed["gengrad_1_thread"]
            line = (f"{row['case']:>30} {'busy' if busy else 'quiet':>6} {timed['gengrad'] * 1e3:>8.2f}ms "
                    f"{timed['gengrad_1_thread'] * 1e3:>8.2f}ms {row['default_over_1_thread']:>6.2f}")
            for peer in ("torch", "jax"):
                if peer in timed:
                    row[f"{peer}_ratio"] = timed[peer] / timed["gengrad"]
                    line += f" {timed[peer] * 1e3:>8.2f}ms {row[f'{peer}_ratio']:>5.2f}x"
            print(line, flush=True)
            rows.append(row)
    return rows


def matmul_peak(dtype) -> dict:
    """GFLOP/s of a 2048^3 matrix product by NumPy (OpenBLAS) and PyTorch, all threads."""
    n = 2048
    A = np.random.default_rng(0).normal(size=(n, n)).astype(dtype)
    peaks = {"numpy": 2 * n ** 3 / median_seconds(lambda: A @ A, repeats=3) / 1e9}
    torch = _torch()
    if torch is not None:
        At = torch.from_numpy(A)
        peaks["torch"] = 2 * n ** 3 / median_seconds(lambda: At @ At, repeats=3) / 1e9
    return peaks


# --- report ---------------------------------------------------------------------------------

def run_row(label, fns, budget, work=None):
    row = {"case": label}
    timed = {name: median_seconds(fn, budget=budget) for name, fn in fns.items() if fn is not None}
    row.update({f"{name}_s": t for name, t in timed.items()})
    line = f"{label:>34} {timed['gengrad'] * 1e6:>10.1f}us"
    for peer in ("torch", "jax"):
        if peer in timed:
            row[f"{peer}_ratio"] = timed[peer] / timed["gengrad"]
            line += f" {timed[peer] * 1e6:>10.1f}us {row[f'{peer}_ratio']:>6.2f}x"
        else:
            line += f" {'-':>12} {'-':>7}"
    if work:
        row["gengrad_gflops"] = work / timed["gengrad"] / 1e9
        line += f"  {row['gengrad_gflops']:6.1f} GF/s"
    row["workspace_bytes"] = gengrad.workspace_bytes()
    print(line, flush=True)
    return row


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--json", help="write the results to this file")
    parser.add_argument("--plot", help="draw time against width (the sweep) into this image")
    parser.add_argument("--quick", action="store_true", help="shorter measurements")
    parser.add_argument("--only", default="cases,ensemble,overhead,sweep,busy",
                        help="comma-separated parts to run")
    parser.add_argument("--peers", default="torch,jax",
                        help="comma-separated peers to time beside gengrad (torch, jax, or none). "
                             "On one machine JAX with x64 enabled left threads busy that slowed "
                             "everything timed after it 10-100x (not on a later one); where float64 "
                             "times jump after JAX's, time float64 with --peers torch")
    args = parser.parse_args(argv)
    parts = set(args.only.split(","))
    dtype = np.float32 if args.dtype == "float32" else np.float64
    budget = 0.05 if args.quick else 0.2
    info = gengrad.build_info()
    peers = [p for p in ("torch", "jax") if p in args.peers.split(",")]
    torch = _torch() if "torch" in peers else None
    jax = _jax() if "jax" in peers else None

    def single(widths, M):
        fns = {"gengrad": gengrad_case(widths, M, dtype)}
        fns.update({p: PEER_CASES[p](widths, M, dtype) for p in peers})
        return fns
    versions = {"torch": torch and torch.__version__, "jax": jax and jax.__version__,
                "numpy": np.__version__}
    print(f"gengrad {gengrad.__version__}: kernels {info['isa']}, {info['threads']} threads; "
          f"{platform.machine()}, {os.cpu_count()} CPUs; {args.dtype}; peers {versions}")
    peak = matmul_peak(dtype)
    best = max(peak.values())
    print("matrix-multiply rate (2048^3): " + ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in peak.items()))
    header = f"{'case':>34} {'gengrad':>12} {'torch':>12} {'ratio':>7} {'jax':>12} {'ratio':>7}"
    report = {"build_info": info, "versions": versions, "dtype": args.dtype,
              "matmul_gflops": peak, "results": []}

    if "cases" in parts:
        print("\none MSE gradient of a ReLU MLP\n" + header)
        for widths, M in CASES:
            row = run_row(f"{widths} @{M}", single(widths, M), budget, flops(widths, M))
            row["fraction_of_matmul_peak"] = row["gengrad_gflops"] / best
            report["results"].append(row)
    if "ensemble" in parts:
        widths, n, M = ENSEMBLE
        print(f"\n{n} independent {widths} networks, {M} samples, all gradients\n" + header)
        fns = {"gengrad": gengrad_ensemble(dtype)}
        fns.update({p: PEER_ENSEMBLES[p](dtype) for p in peers})
        row = run_row(f"ensemble {n} x {widths} @{M}", fns, budget, n * flops(widths, M))
        report["results"].append(row)
    if "overhead" in parts:
        net, theta, X, Y = problem((1, 1, 1), 1, dtype)
        out = np.empty_like(theta)
        python_call = median_seconds(lambda: net.risk_and_gradient(theta, X, Y, out=out), budget=budget)
        core = net.core
        core_call = median_seconds(lambda: core.risk_gradient(theta, X, Y, None, 0, 0.0, True, out), budget=budget)
        print(f"\nper-call time of widths (1,1,1), 1 sample: Python API {python_call * 1e6:.2f} us, "
              f"compiled core alone {core_call * 1e6:.2f} us")
        report["overhead"] = {"python_api_s": python_call, "core_s": core_call}
    if "busy" in parts:
        report["busy"] = busy_rows(single, budget)
    if "sweep" in parts:
        print("\nsweep: widths (w, w, w, 1) at 1024 samples, then (32, 32, 32, 1) over samples\n" + header)
        sweep = []
        for w in SWEEP_WIDTHS:
            widths = (w, w, w, 1)
            row = run_row(f"{widths} @1024", single(widths, 1024), budget / 2, flops(widths, 1024))
            row.update(width=w, M=1024)
            sweep.append(row)
        for M in SWEEP_BATCHES:
            widths = (32, 32, 32, 1)
            row = run_row(f"{widths} @{M}", single(widths, M), budget / 2, flops(widths, M))
            row.update(width=32, M=M)
            sweep.append(row)
        report["sweep"] = sweep
        if args.plot:
            plot_sweep(sweep, args.plot, args.dtype)
    if args.json:
        write_atomically(args.json, lambda f: f.write(json.dumps(report, indent=2).encode()))
    return 0


def plot_sweep(sweep, path, dtype):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in sweep if r["M"] == 1024 and r["width"] in SWEEP_WIDTHS]
    fig, ax = plt.subplots(figsize=(6, 4))
    for name in ("gengrad", "torch", "jax"):
        points = [(r["width"], r[f"{name}_s"] * 1e6) for r in rows if f"{name}_s" in r]
        if points:
            ax.loglog(*zip(*points), marker="o", label=name)
    ax.set_xlabel("width w of (w, w, w, 1)")
    ax.set_ylabel("one MSE gradient at 1024 samples [µs]")
    ax.set_title(f"ReLU MLP, {dtype}, CPU")
    ax.legend()
    fig.tight_layout()
    write_atomically(path, lambda f: fig.savefig(f, format=os.path.splitext(path)[1][1:] or "png", dpi=120))


if __name__ == "__main__":
    raise SystemExit(main())
