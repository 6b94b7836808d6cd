"""Side-by-side timings: one risk-and-gradient evaluation of the mean squared error of a ReLU
MLP, gengrad against PyTorch eager (and JAX jit) in the same process, reported as medians and
ratios.

    python bench/run.py [--dtype float32|float64] [--json out.json] [--quick]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time

import numpy as np

import gengrad

CASES = [
    ((1, 16, 16, 1), 256),
    ((8, 32, 32, 1), 1024),
    ((64, 128, 128, 10), 256),
    ((64, 256, 256, 256, 10), 1024),
    ((784, 512, 512, 10), 1024),
]


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


def problem(widths, M, dtype, seed=0):
    net = gengrad.Network(widths, "relu")
    rng = np.random.default_rng(seed)
    theta = net.init(seed, dtype)
    X = rng.normal(size=(M, widths[0])).astype(dtype)
    Y = rng.normal(size=(M, widths[-1])).astype(dtype)
    return net, theta, X, Y


def gengrad_case(widths, M, dtype):
    net, theta, X, Y = problem(widths, M, dtype)
    out = np.empty_like(theta)
    return lambda: net.risk_and_gradient(theta, X, Y, out=out)


def torch_case(widths, M, dtype):
    try:
        import torch
    except ImportError:
        return None
    torch_dtype = {np.float32: torch.float32, np.float64: torch.float64}[dtype]
    net, theta, X, Y = problem(widths, M, dtype)
    layers = []
    for k, (W, b) in enumerate(net.layers(theta)):
        linear = torch.nn.Linear(W.shape[1], W.shape[0]).to(torch_dtype)
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


def jax_case(widths, M, dtype):
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        return None
    if dtype == np.float64:
        jax.config.update("jax_enable_x64", True)
    net, theta, X, Y = problem(widths, M, dtype)
    params = [(jnp.asarray(W), jnp.asarray(b)) for W, b in net.layers(theta)]

    def risk(params, X, Y):
        h = X
        for k, (W, b) in enumerate(params):
            h = h @ W.T + b
            if k + 1 < len(params):
                h = jax.nn.relu(h)
        return jnp.mean(jnp.sum((h - Y) ** 2, axis=1))

    grad = jax.jit(jax.value_and_grad(risk))
    Xj, Yj = jnp.asarray(X), jnp.asarray(Y)
    return lambda: jax.block_until_ready(grad(params, Xj, Yj))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--json", help="write the results to this file")
    parser.add_argument("--quick", action="store_true", help="shorter measurements")
    args = parser.parse_args(argv)
    dtype = np.float32 if args.dtype == "float32" else np.float64
    budget = 0.05 if args.quick else 0.2
    info = gengrad.build_info()
    print(f"gengrad {gengrad.__version__}: {info['isa']}, {info['threads']} threads; "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; {args.dtype}")
    peers = {"torch": torch_case, "jax": jax_case}
    print(f"{'widths':>24} {'M':>6} {'gengrad':>11}" + "".join(f" {p:>11} {'ratio':>7}" for p in peers))
    results = []
    for widths, M in CASES:
        row = {"widths": list(widths), "M": M, "dtype": args.dtype}
        row["gengrad_s"] = median_seconds(gengrad_case(widths, M, dtype), budget=budget)
        line = f"{str(widths):>24} {M:>6} {row['gengrad_s'] * 1e6:>9.1f}us"
        for peer, make in peers.items():
            fn = make(widths, M, dtype)
            if fn is None:
                line += f" {'-':>11} {'-':>7}"
                continue
            row[f"{peer}_s"] = median_seconds(fn, budget=budget)
            line += f" {row[f'{peer}_s'] * 1e6:>9.1f}us {row[f'{peer}_s'] / row['gengrad_s']:>6.2f}x"
        flops = 6 * M * sum(a * b for a, b in zip(widths, widths[1:]))
        row["gengrad_gflops"] = flops / row["gengrad_s"] / 1e9
        print(line + f"   ({row['gengrad_gflops']:.1f} GFLOP/s)")
        results.append(row)
    if args.json:
        directory = os.path.dirname(os.path.abspath(args.json))
        with tempfile.NamedTemporaryFile("w", dir=directory, delete=False, suffix=".tmp") as f:
            json.dump({"build_info": info, "results": results}, f, indent=2)
        os.replace(f.name, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
