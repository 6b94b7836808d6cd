"""`gengrad verify`: the paper's three claims checked on one network (gengrad.verify)."""
from __future__ import annotations

import argparse
from typing import Optional

import numpy as np

from .. import activations, plots, verify
from ..network import LOSSES, Network


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser("verify", help="check the paper's three claims (docs/math.md §5) on a network: "
                                 "approximation, subgradient certificate, finite differences, kink statistics")
    parser.add_argument("--widths", default="2,5,4,1", help="layer widths, e.g. 2,5,4,1")
    parser.add_argument("--activation", default="relu", help="a name, or leaky_relu(0.2), hardtanh(-1,1), clip(-0.5,2)")
    parser.add_argument("--convention", default=None,
                        help="left, right, the derivative at the kinks, or one value per kink (1,1)")
    parser.add_argument("--loss", choices=LOSSES, default="squared_error")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", choices=("kink", "random"), default="kink",
                        help="kink: integer theta and data that hit kinks exactly; random: normal")
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--dtype", choices=("float64", "float32"), default="float64",
                        help="dtype of the approximation study (the certificate and finite differences run in "
                             "float64)")
    parser.add_argument("--theta", help=".npy file holding a flat theta (docs/math.md §1 layout)")
    parser.add_argument("--plot", help="image file: ||grad L_r - G|| against r, per family")
    parser.set_defaults(run=verify_command)


def verify_command(args: argparse.Namespace) -> int:
    """Run gengrad.verify on the chosen network and print the report; exit status 0 when every
    check passes, 1 when one fails, 2 for bad arguments (main prints those)."""
    widths = tuple(int(w) for w in args.widths.split(","))
    net = Network(widths, args.activation, parse_convention(args.convention), loss=args.loss)
    theta, X, Y = verify.example_problem(net, args.data, args.samples, args.seed, args.dtype)
    if args.theta:
        theta = np.load(args.theta, allow_pickle=False)
        if theta.shape != (net.dim,) or theta.dtype.kind != "f":
            raise ValueError(f"--theta {args.theta} must hold a float vector of length "
                             f"d = {net.dim} for widths {widths}, got {theta.dtype} "
                             f"{theta.shape}")
        theta = theta.astype(args.dtype)
    if args.plot:
        plots.check_target(args.plot)  # fail before the work, not after it
    print(f"network {net.widths}, {net.activation}, {net.loss}, d = {net.dim}; "
          f"{len(X)} {args.data} samples, seed {args.seed}, {args.dtype}"
          + (f", theta from {args.theta}" if args.theta else ""))
    report = verify.verify(net, theta, X, Y)
    print(f"\n{report}")
    if args.plot:
        plots.approximation_study(report.approximation, args.plot)
        print(f"plot written to {args.plot}")
    return 0 if report.passed else 1


def parse_convention(text: Optional[str]) -> activations.Convention:
    """None, "left", "right", a number, or comma-separated numbers (one per kink)."""
    if text is None or text in ("left", "right"):
        return text
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise ValueError(f"convention must be left, right, a number or numbers separated by "
                         f"commas, got {text!r}") from None
    return values[0] if len(values) == 1 else tuple(values)
