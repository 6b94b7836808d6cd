"""GPU timings: gengrad's CUDA backend against PyTorch CUDA (eager and replayed as a CUDA graph)
and JAX jit / vmap, on the CPU benchmark's cases (bench/run.py) plus ensembles of 10^4 networks.

Each case times one risk-and-gradient evaluation of the mean squared error of a ReLU MLP with
every array already on the GPU (gengrad reads PyTorch tensors through DLPack without copies),
waiting for the device after each call. It reports medians, ratios (peer time / gengrad time:
above 1 means gengrad is faster), gengrad's achieved FLOP rate and bandwidth against the device
ceilings measured here (a large matrix product, a large device-to-device copy), and whether the
targets of issue 7 are met: narrow nets (width <= 128) 3x faster than JAX jit, wide nets no
slower than PyTorch, ensembles 3x faster than JAX vmap. `tiles` is the fused kernel's time with
one output per thread over its time with 4 x 4 register tiles (the default; the same results):
above 1 means the register tiles pay on this device.

    python bench/cuda.py [--dtype float32|float64] [--json FILE] [--quick]

Needs a CUDA device, gengrad built with its CUDA backend, and PyTorch with CUDA (JAX with CUDA
optional); exits with status 2 and the reason otherwise.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time

import numpy as np
from run import CASES, ENSEMBLE, _jax_risk, flops, median_seconds, write_atomically

import gengrad

ENSEMBLES = [ENSEMBLE, ((1, 32, 32, 1), 10_000, 256), ((4, 64, 64, 1), 10_000, 128)]
NARROW = 128  # widest hidden layer of a "narrow" net (issue 7)
# Peers; the targets are judged against the float32 ones ("jax" at precision "highest"), and
# "jax_tf32" is JAX's default, which multiplies float32 matrices in TF32.
PEERS = ("torch", "torch_graph", "jax", "jax_tf32")


def _torch_cuda():
    try:
        import torch
    except ImportError:
        return None
    return torch if torch.cuda.is_available() else None


def _jax_gpu():
    try:
        import jax
    except ImportError:
        return None
    return jax if any(d.platform == "gpu" for d in jax.devices()) else None


def ceilings(torch, dtype) -> dict:
    """The device's measured matrix-multiply rate (GFLOP/s) and copy bandwidth (GB/s)."""
    tdtype = getattr(torch, np.dtype(dtype).name)
    n = 8192 if dtype == np.float32 else 4096
    A = torch.randn(n, n, device="cuda", dtype=tdtype)
    matmul = median_seconds(lambda: (A @ A, torch.cuda.synchronize()), repeats=3)
    src = torch.empty(1 << 28, device="cuda", dtype=torch.uint8)  # 256 MiB
    dst = torch.empty_like(src)
    copy = median_seconds(lambda: (dst.copy_(src), torch.cuda.synchronize()), repeats=3)
    return {"matmul_gflops": 2 * n ** 3 / matmul / 1e9, "copy_gbps": 2 * src.numel() / copy / 1e9}


def params(net, thetas):
    """Per layer (W, b) stacked over networks: (n, l_k, l_{k-1}), (n, l_k)."""
    layers = [net.layers(t) for t in thetas]
    return [(np.stack([ls[k][0] for ls in layers]), np.stack([ls[k][1] for ls in layers]))
            for k in range(net.n_layers)]


def problem(widths, n, M, dtype):
    ens = gengrad.Ensemble(widths, n, "relu", backend="cuda")
    thetas = ens.init(0, dtype)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(M, widths[0])).astype(dtype)
    Y = np.sin(X[:, :1]).repeat(widths[-1], axis=1).astype(dtype)
    return ens, thetas, X, Y


def gengrad_fn(torch, ens, thetas, X, Y):
    d_thetas, d_X, d_Y = (torch.from_numpy(a).cuda() for a in (thetas, X, Y))
    if ens.n == 1:
        net, d_theta = ens.network, d_thetas[0].contiguous()
        return lambda: net.risk_and_gradient(d_theta, d_X, d_Y)
    return lambda: ens.risk_and_gradient(d_thetas, d_X, d_Y)


def one_output_per_thread(fn):
    """fn with the fused kernel's threads taking one output each instead of 4 x 4 register tiles
    (the same results; timed beside the default to show which is faster on this device)."""
    from gengrad import _cuda

    def run():
        _cuda._set_register_tiles(False)
        try:
            return fn()
        finally:
            _cuda._set_register_tiles(True)

    return run


def torch_step(torch, ens, thetas, X, Y):
    """One autograd evaluation with batched products over the networks (torch.baddbmm)."""
    ps = []
    for W, b in params(ens.network, thetas):
        ps += [torch.tensor(W, device="cuda", requires_grad=True),
               torch.tensor(b[:, None, :], device="cuda", requires_grad=True)]
    Xt = torch.from_numpy(X).cuda().expand(ens.n, *X.shape)
    Yt = torch.from_numpy(Y).cuda().expand(ens.n, *Y.shape)

    def step():
        h = Xt
        for k in range(0, len(ps), 2):
            h = torch.baddbmm(ps[k + 1], h, ps[k].transpose(1, 2))
            if k + 2 < len(ps):
                h = torch.relu(h)
        loss = ((h - Yt) ** 2).sum(dim=2).mean(dim=1).sum()
        loss.backward()
        return loss

    return ps, step


def torch_eager(torch, *args):
    ps, step = torch_step(torch, *args)

    def run():
        for p in ps:
            p.grad = None
        step()
        torch.cuda.synchronize()

    return run


def torch_graph(torch, *args):
    """The same step captured once as a CUDA graph and replayed (no launch overhead per kernel)."""
    ps, step = torch_step(torch, *args)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            for p in ps:
                p.grad = None
            step()
    torch.cuda.current_stream().wait_stream(side)
    for p in ps:
        p.grad = None
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()
    return lambda: (graph.replay(), torch.cuda.synchronize())


def jax_fn(jax, precision, ens, thetas, X, Y):
    """JAX jit (vmap for ensembles) with its matrix products at `precision`: "default" is what a
    JAX user gets, TF32 on tensor cores for float32 (10 mantissa bits, not float32's result),
    "highest" computes in float32 like gengrad and PyTorch (allow_tf32 is off by default)."""
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", thetas.dtype == np.float64)
    risk = _jax_risk(jax)

    layers = [(jnp.asarray(W), jnp.asarray(b)) for W, b in params(ens.network, thetas)]
    if ens.n == 1:
        grad = jax.jit(jax.value_and_grad(risk))
        layers = [(W[0], b[0]) for W, b in layers]
    else:
        grad = jax.jit(jax.vmap(jax.value_and_grad(risk), in_axes=(0, None, None)))
    Xj, Yj = jnp.asarray(X), jnp.asarray(Y)

    def run():
        with jax.default_matmul_precision(precision):
            return jax.block_until_ready(grad(layers, Xj, Yj))

    return run


def row(label, widths, n, M, dtype, torch, jax, ceiling, budget):
    args = problem(widths, n, M, dtype)
    fns = {"gengrad": gengrad_fn(torch, *args), "gengrad_1x1": one_output_per_thread(gengrad_fn(torch, *args)),
           "torch": torch_eager(torch, *args),
           "torch_graph": torch_graph(torch, *args)}
    if jax is not None:
        fns["jax"] = jax_fn(jax, "highest", *args)
        fns["jax_tf32"] = jax_fn(jax, "default", *args)
    timed = {name: median_seconds(fn, budget=budget) for name, fn in fns.items()}
    t = timed["gengrad"]
    work = n * flops(widths, M)
    d = args[0].dim
    traffic = np.dtype(dtype).itemsize * (2 * n * d + M * (widths[0] + widths[-1]))  # read θ, X, Y; write G
    result = {"case": label, "widths": widths, "n": n, "M": M, **{f"{k}_s": v for k, v in timed.items()},
              "gflops": work / t / 1e9, "gbps": traffic / t / 1e9}
    result["flop_fraction"] = result["gflops"] / ceiling["matmul_gflops"]
    result["register_tile_speedup"] = timed["gengrad_1x1"] / t
    result["bandwidth_fraction"] = result["gbps"] / ceiling["copy_gbps"]
    for peer in PEERS:
        if peer in timed:
            result[f"{peer}_ratio"] = timed[peer] / t
    narrow = max(widths[1:-1]) <= NARROW
    if n > 1:
        result["target"] = "ensemble: >= 3x JAX vmap"
        result["met"] = result["jax_ratio"] >= 3 if "jax_ratio" in result else None
    elif narrow:
        result["target"] = "narrow: >= 3x JAX jit"
        result["met"] = result["jax_ratio"] >= 3 if "jax_ratio" in result else None
    else:
        result["target"] = "wide: no slower than PyTorch"
        result["met"] = min(result["torch_ratio"], result["torch_graph_ratio"]) >= 1
    ratios = "  ".join(f"{p} {result[p + '_ratio']:5.2f}x" for p in PEERS
                       if p + "_ratio" in result)
    print(f"{label:>30} {t * 1e6:9.1f}us  {ratios}  {result['gflops']:8.1f} GF/s "
          f"({result['flop_fraction']:.1%})  {result['gbps']:7.1f} GB/s ({result['bandwidth_fraction']:.1%})  "
          f"tiles {result['register_tile_speedup']:.2f}x  "
          f"{result['target']}: {'met' if result['met'] else 'NOT met' if result['met'] is False else 'n/a'}",
          flush=True)
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--json", help="write the results to this file")
    parser.add_argument("--quick", action="store_true", help="shorter timings")
    args = parser.parse_args(argv)
    reason = gengrad.cuda.unavailable()
    torch = _torch_cuda()
    if reason is None and torch is None:
        reason = "PyTorch with CUDA is needed (for device arrays, the ceilings and the peer timings)"
    if reason is not None:
        print(f"bench/cuda.py needs a GPU: {reason}", file=sys.stderr)
        return 2
    jax = _jax_gpu()
    dtype = np.dtype(args.dtype).type
    budget = 0.05 if args.quick else 0.3
    ceiling = ceilings(torch, dtype)
    info = gengrad.build_info()["cuda"]
    print(f"{info['device_names'][0]}: matmul {ceiling['matmul_gflops']:.0f} GFLOP/s, "
          f"copy {ceiling['copy_gbps']:.0f} GB/s; JAX on GPU: {'yes' if jax else 'no'}", flush=True)
    rows = [row(f"{widths} @{M}", widths, 1, M, dtype, torch, jax, ceiling, budget) for widths, M in CASES]
    rows += [row(f"ensemble {n} x {widths} @{M}", widths, n, M, dtype, torch, jax, ceiling, budget)
             for widths, n, M in ENSEMBLES]
    if args.json:
        report = {"dtype": args.dtype, "device": info, "ceilings": ceiling, "rows": rows,
                  "python": platform.python_version(), "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        write_atomically(args.json, json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
