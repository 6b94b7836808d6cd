"""`gengrad demo`: kink hits and the generalized gradient on a small ReLU network."""
from __future__ import annotations

import argparse
from typing import Optional

import numpy as np

from .. import build_info
from ..network import Network


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser("demo", help="kink hits and the generalized gradient on a small ReLU net")
    parser.add_argument("--seed", type=int, default=4)
    parser.add_argument("--rows", type=int, default=12, help="components to print")
    parser.set_defaults(run=demo)


def _torch_gradient(net: Network, theta: np.ndarray, X: np.ndarray, Y: np.ndarray) -> Optional[np.ndarray]:
    """PyTorch autograd's gradient of the same risk, or None without torch."""
    try:
        import torch
    except ImportError:
        return None
    t = torch.tensor(theta, requires_grad=True)
    h = torch.from_numpy(X)
    for k, (w, b, rows, cols) in enumerate(net.layout):
        z = h @ t[w:w + rows * cols].reshape(rows, cols).T + t[b:b + rows]
        h = torch.relu(z) if k + 1 < len(net.layout) else z
    ((z - torch.from_numpy(Y)) ** 2).sum(dim=1).mean().backward()  # type: ignore[no-untyped-call]
    assert t.grad is not None
    return t.grad.numpy()


def demo(args: argparse.Namespace) -> int:
    """A network whose integer weights and data put pre-activations exactly on relu's kink:
    the kink counts, G under both one-sided conventions, and PyTorch's value."""
    info = build_info()
    print(f"gengrad core: {info['compiler']}, kernels {info['isa']} "
          f"(built: {', '.join(info['isas_built'])}), {info['threads']} threads")
    rng = np.random.default_rng(args.seed)
    widths = (2, 5, 4, 1)
    net0 = Network(widths, "relu")               # relu'(0) = 0, PyTorch's convention
    net1 = Network(widths, "relu", convention=1.0)
    theta = rng.integers(-2, 3, net0.dim).astype(np.float64)
    X = rng.integers(-2, 3, (8, 2)).astype(np.float64)
    Y = rng.integers(-2, 3, (8, 1)).astype(np.float64)
    print(f"\nnetwork {widths}, relu, d = {net0.dim}, 8 integer-valued samples, integer theta")
    print(f"exact kink hits per hidden layer: {net0.kink_counts(theta, X).tolist()}")
    risk, G0 = net0.risk_and_gradient(theta, X, Y)
    G1 = net1.gradient(theta, X, Y)
    G_torch = _torch_gradient(net0, theta, X, Y)
    print(f"risk L(theta) = {risk:.6g}\n")
    header = f"{'i':>3} {'G, relu(0)=0':>14} {'G, relu(0)=1':>14}"
    print(header + (f" {'torch autograd':>15}" if G_torch is not None else ""))
    for i in np.flatnonzero(G0 != G1)[: args.rows]:
        line = f"{i:>3} {G0[i]:>14.6g} {G1[i]:>14.6g}"
        print(line + (f" {G_torch[i]:>15.6g}" if G_torch is not None else ""))
    print(f"\n{np.count_nonzero(G0 != G1)} of {net0.dim} components depend on the convention; "
          f"||G0 - G1|| = {np.linalg.norm(G0 - G1):.6g}")
    if G_torch is None:
        print("PyTorch is not installed; its relu'(0) = 0 is the default convention (column 1).")
    else:
        print(f"max |G0 - torch| = {np.abs(G0 - G_torch).max():.3g} (PyTorch uses relu'(0) = 0)")
    print("\nadmissible approximants reach G exactly; the softplus families need not:")
    for r in (1e1, 1e3, 1e5):
        errors = [np.linalg.norm(net0.approx_gradient(theta, X, Y, r, family) - G0)
                  for family in ("cubic", "sine", "shifted_softplus", "softplus")]
        print(f"  r = {r:8.0e}: ||grad L_r - G||  cubic {errors[0]:.3g}  sine {errors[1]:.3g}  "
              f"shifted softplus {errors[2]:.3g}  softplus {errors[3]:.3g}")
    return 0
