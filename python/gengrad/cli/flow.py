"""`gengrad flow`: the gradient flow of a one-hidden-layer network on a regression target."""
from __future__ import annotations

import argparse
import time

from .. import datasets, plots
from ..gradient_flow import flow
from ..network import Network


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser("flow", help="integrate the gradient flow of a small network")
    parser.add_argument("--data", default="sine", choices=tuple(datasets.TARGETS),
                        help="the regression target on [-1, 1]")
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=16, help="width of the hidden layer")
    parser.add_argument("--activation", default="relu")
    parser.add_argument("--t-end", type=float, default=50.0)
    parser.add_argument("--rtol", type=float, default=1e-8)
    parser.add_argument("--atol", type=float, default=1e-10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--events", type=int, default=10, help="events to list")
    parser.add_argument("--plot", help="save risk and parameter trajectories to this image file")
    parser.set_defaults(run=command)


def command(args: argparse.Namespace) -> int:
    """Integrates the gradient flow of a one-hidden-layer network and prints a summary."""
    if args.plot:
        plots.check_target(args.plot)  # fail before the work, not after it
    data = datasets.regression(args.data, n_train=args.samples, seed=args.seed)
    net = Network((1, args.hidden, 1), args.activation)
    print(f"{data.name}: {args.samples} samples; network {net.widths} {net.activation}, "
          f"d = {net.dim}")
    start = time.perf_counter()
    result = flow(net, net.init(seed=args.seed), data.X_train, data.y_train, args.t_end,
                  rtol=args.rtol, atol=args.atol)
    print(result.summary() + f"\n  {time.perf_counter() - start:.3f} s")
    if result.events and args.events > 0:
        print(f"\n{'t':>12} {'kind':<14} layer sample neuron")
        for e in result.events[:args.events]:
            print(f"{e.t:12.6g} {e.kind:<14} {e.layer:5d} {e.sample:6d} {e.neuron:6d}")
        if len(result.events) > args.events:
            print(f"... and {len(result.events) - args.events} more")
    if args.plot:
        plots.flow_trajectories(result, args.plot)
        print(f"figure written to {args.plot}")
    return 0 if result.success else 1
