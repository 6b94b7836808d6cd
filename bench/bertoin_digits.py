"""Bertoin et al. (NeurIPS 2021) at small scale: how often does relu'(0) matter in practice?

For a ReLU MLP on scikit-learn's bundled digits (1797 images of 8x8 pixels, 64 inputs scaled to
[0, 1], 10 classes, softmax cross-entropy), the fraction of N random initialisations (PyTorch's
nn.Linear scheme) for which relu'(0) = 0 and relu'(0) = 1 give different first-layer weight
gradients on at least one mini-batch of one shuffled epoch, at the initialisation, in float32
and float64 (the float32 θ is the float64 draw rounded). gengrad's exact kink counts say where
the difference comes from. Needs scikit-learn (pip install 'gengrad[data]').

    python bench/bertoin_digits.py [--n 100] [--batch 64] [--widths 64,32,10 ...] [--json FILE]
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import numpy as np

import gengrad

ARCHITECTURES = ["64,32,10", "64,128,10", "64,128,128,10", "64,256,256,256,10",
                 "64,512,512,512,10"]


def digits():
    try:
        from sklearn.datasets import load_digits
    except ImportError as missing:
        raise SystemExit("bertoin_digits needs scikit-learn: pip install 'gengrad[data]'") from missing
    data = load_digits()
    return data.data / 16.0, data.target          # pixels k/16: exact in float32


def one_initialisation(widths, seed, X, labels, batch, dtype):
    """For one initialisation: (batches whose first-layer weight gradient depends on relu'(0),
    batches with an exact kink hit, kink hits per hidden layer over the epoch)."""
    left = gengrad.Network(widths, "relu", 0.0, loss="cross_entropy")
    right = gengrad.Network(widths, "relu", 1.0, loss="cross_entropy")
    theta = left.init(seed, np.float64, scheme="torch").astype(dtype)
    first_layer = widths[0] * widths[1]           # W_1 leads the flat θ (docs/math.md §1)
    order = np.random.default_rng(seed).permutation(len(X))
    X = X.astype(dtype)
    differing, hit_batches, hits = 0, 0, np.zeros(len(widths) - 2, np.int64)
    for start in range(0, len(X), batch):
        rows = order[start:start + batch]
        counts = left.kink_counts(theta, X[rows])
        if not counts.sum():
            continue    # no hit: both conventions give the same G (tests/test_verify.py)
        hits += counts
        hit_batches += 1
        G0 = left.gradient(theta, X[rows], labels[rows])
        G1 = right.gradient(theta, X[rows], labels[rows])
        differing += not np.array_equal(G0[:first_layer], G1[:first_layer])
    return differing, hit_batches, hits


def wilson_interval(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % confidence interval of a binomial fraction k/n (Wilson), sound at k = 0."""
    centre, half = k + z * z / 2, z * np.sqrt(k * (n - k) / n + z * z / 4)
    return (centre - half) / (n + z * z), (centre + half) / (n + z * z)


def measure(widths, n, batch, dtype, X, labels):
    runs = [one_initialisation(widths, seed, X, labels, batch, dtype) for seed in range(n)]
    differing = [d for d, _, _ in runs]
    k = sum(d > 0 for d in differing)
    return {
        "widths": list(widths), "dtype": np.dtype(dtype).name, "initialisations": n,
        "batch": batch, "batches_per_epoch": -(-len(X) // batch),
        "fraction_differing": k / n, "fraction_differing_95": wilson_interval(k, n),
        "fraction_with_kink_hits": sum(h > 0 for _, h, _ in runs) / n,
        "mean_differing_batches": float(np.mean(differing)),
        "kink_hits_per_layer": np.sum([h for _, _, h in runs], axis=0).tolist(),
        # exact hits per (sample, hidden neuron) pair evaluated
        "hit_rate": float(sum(h.sum() for _, _, h in runs) / (n * len(X) * sum(widths[1:-1]))),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100, help="random initialisations per case")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--widths", nargs="+", default=ARCHITECTURES,
                        help="architectures, e.g. 64,128,10 (input 64, output 10)")
    parser.add_argument("--json", help="write the results to this file")
    args = parser.parse_args()
    # Batches of 64 are too small to split: on a busy 2-core machine a second thread cost about
    # 7.7 ms per call against 0.04 ms on one. Results are the same for any thread count.
    gengrad.set_num_threads(1)
    X, labels = digits()
    print(f"digits: {len(X)} samples; {args.n} initialisations per row, batch {args.batch}, "
          f"one epoch at the initialisation; gengrad {gengrad.__version__}, "
          f"kernels {gengrad.build_info()['isa']}\n")
    print(f"{'widths':<20} {'dtype':<8} {'W1 grad differs (95% CI)':>26} {'any kink hit':>13} "
          f"{'hits per layer':>16} {'hits per pair':>14} {'time':>7}")
    results = []
    for text in args.widths:
        widths = tuple(int(w) for w in text.split(","))
        if widths[0] != X.shape[1] or widths[-1] != 10:
            parser.error(f"--widths {text}: digits need 64 inputs and 10 outputs")
        for dtype in (np.float32, np.float64):
            start = time.perf_counter()
            row = measure(widths, args.n, args.batch, dtype, X, labels)
            row["seconds"] = time.perf_counter() - start
            results.append(row)
            low, high = row["fraction_differing_95"]
            interval = f"{row['fraction_differing']:.3f} ({low:.3f}-{high:.3f})"
            print(f"{text:<20} {row['dtype']:<8} {interval:>26} "
                  f"{row['fraction_with_kink_hits']:>13.3f} "
                  f"{str(row['kink_hits_per_layer']):>16} {row['hit_rate']:>14.2g} "
                  f"{row['seconds']:>6.1f}s")
    if args.json:
        directory = os.path.dirname(os.path.abspath(args.json))
        with tempfile.NamedTemporaryFile("w", dir=directory, delete=False, suffix=".tmp") as f:
            json.dump({"build_info": gengrad.build_info(), "results": results}, f, indent=2)
        os.chmod(f.name, 0o644)     # a temporary file is created readable by its owner only
        os.replace(f.name, args.json)


if __name__ == "__main__":
    main()
