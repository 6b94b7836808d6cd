"""The `gengrad` command."""
from __future__ import annotations

import argparse
import sys
from typing import NoReturn, Optional, Sequence

import numpy as np

from . import Network, build_info, verify
from .flow import add_arguments as add_flow_arguments
from .flow import command as flow_command
from .network import LOSSES
from .train import add_arguments as add_train_arguments
from .train import command as train_command


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


def narrow(args: argparse.Namespace) -> int:
    """Park 2024's narrow network: the derivation, the monodromy evidence and the verdict."""
    from . import narrow as park  # needs the narrow extra (sympy, mpmath, scipy)

    try:
        if args.activation in park.CONSTRUCTIONS:
            given = [f"--{name}" for name in ("architecture", "target", "digits") if getattr(args, name) is not None]
            if given:
                raise ValueError(f"{', '.join(given)} {'applies' if len(given) == 1 else 'apply'} to tanh and "
                                 f"identity only; {args.activation} takes the "
                                 f"{park.CONSTRUCTIONS[args.activation]} construction")
            park.report_relaxation(args.activation, controls=not args.no_contrasts)
        else:
            digits = 30 if args.digits is None else args.digits
            park.report(args.architecture or "biased", args.activation, args.target or "1",
                        digits=digits or None, contrasts=not args.no_contrasts)
    except (TypeError, ValueError) as error:
        print(f"gengrad narrow: {error}", file=sys.stderr)
        return 2
    return 0


def verify_command(args: argparse.Namespace) -> int:
    """Run gengrad.verify on the chosen network and print the report; exit status 0 when every
    check passes, 1 when one fails, 2 for bad arguments (main prints those)."""
    widths = tuple(int(w) for w in args.widths.split(","))
    net = Network(widths, args.activation, verify.parse_convention(args.convention), loss=args.loss)
    theta, X, Y = verify.example_problem(net, args.data, args.samples, args.seed, args.dtype)
    if args.theta:
        theta = np.load(args.theta, allow_pickle=False)
        if theta.shape != (net.dim,) or theta.dtype.kind != "f":
            raise ValueError(f"--theta {args.theta} must hold a float vector of length "
                             f"d = {net.dim} for widths {widths}, got {theta.dtype} "
                             f"{theta.shape}")
        theta = theta.astype(args.dtype)
    if args.plot:
        from . import plots
        plots.check_target(args.plot)  # fail before the work, not after it
    print(f"network {net.widths}, {net.activation}, {net.loss}, d = {net.dim}; "
          f"{len(X)} {args.data} samples, seed {args.seed}, {args.dtype}"
          + (f", theta from {args.theta}" if args.theta else ""))
    report = verify.verify(net, theta, X, Y)
    print(f"\n{report}")
    if args.plot:
        verify.plot_approximation(report.approximation, args.plot)
        print(f"plot written to {args.plot}")
    return 0 if report.passed else 1


def info(args: argparse.Namespace) -> int:
    from . import __version__
    core = build_info()
    cuda = core.pop("cuda")
    print(f"gengrad {__version__}: {core['compiler']}; kernels {core['isa']} (built: {', '.join(core['isas_built'])}; "
          f"this CPU: {', '.join(core['isas_supported'])}); {core['threads']} threads (at most {core['max_threads']})")
    if not cuda["built"]:
        print(f"CUDA backend: not available: {cuda['unavailable']}")
    elif cuda["unavailable"]:
        print(f"CUDA backend: built (architectures {cuda['architectures']}), not usable here: {cuda['unavailable']}")
    else:
        print(f"CUDA backend: usable on {cuda['devices']} device(s): {', '.join(cuda['device_names'])}")
    return 0


# Optional modules and the extra that installs them, for one-line errors.
_EXTRAS = {"sympy": "narrow", "mpmath": "narrow", "scipy": "narrow", "matplotlib": "plot", "sklearn": "data",
           "tqdm": "progress", "torch": "torch", "jax": "jax"}


def _one_line(command: str, error: BaseException) -> str:
    module = (getattr(error, "name", None) or "").split(".")[0]
    if isinstance(error, ImportError) and module in _EXTRAS:
        return f"gengrad {command}: needs {module}: pip install 'gengrad[{_EXTRAS[module]}]'"
    return f"gengrad {command}: {error}"


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors as one line (no usage block); the subcommands' parsers are of
    this class too."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message}\n")


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = _Parser(prog="gengrad", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("demo", help="kink hits and the generalized gradient on a small ReLU net")
    p.add_argument("--seed", type=int, default=4)
    p.add_argument("--rows", type=int, default=12, help="components to print")
    p.set_defaults(run=demo)
    p = commands.add_parser("narrow", help="Park 2024's four-parameter network: flow, normal "
                            "variational equation, monodromy, non-integrability verdict")
    p.add_argument("--architecture", help="tanh and identity: biased (f = v σ(wx + b) + c, the default) or "
                   "bias_free (f = v1 σ(w1 x) + v2 σ(w2 x))")
    p.add_argument("--activation", default="tanh", help="tanh, identity (odd: monodromy of a Fuchsian NVE), "
                   "softplus, sigmoid (f = a1 σ(w1 x) + a2 σ(w2 x)), silu, gelu (f = v σ(wx + b) + c at "
                   "σ'(b) = 0): Stokes data of an NVE irregular at ∞")
    p.add_argument("--target", help="tanh and identity: y* > 0 of the data (1, y*), (-1, -y*); e.g. 1 (the "
                   "default) or 1/2")
    p.add_argument("--digits", type=int, help="tanh and identity: digits of the fine monodromy integration "
                   "(default 30; 0: double precision only)")
    p.add_argument("--no-contrasts", action="store_true", help="skip the contrast models (the controls)")
    p.set_defaults(run=narrow)
    p = commands.add_parser("verify", help="check the paper's three claims (docs/math.md §5) on a "
                            "network: approximation, subgradient certificate, finite "
                            "differences, kink statistics")
    p.add_argument("--widths", default="2,5,4,1", help="layer widths, e.g. 2,5,4,1")
    p.add_argument("--activation", default="relu",
                   help="a name, or leaky_relu(0.2), hardtanh(-1,1), clip(-0.5,2)")
    p.add_argument("--convention", default=None,
                   help="left, right, the derivative at the kinks, or one value per kink (1,1)")
    p.add_argument("--loss", choices=LOSSES, default="squared_error")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data", choices=("kink", "random"), default="kink",
                   help="kink: integer theta and data that hit kinks exactly; random: normal")
    p.add_argument("--samples", type=int, default=8)
    p.add_argument("--dtype", choices=("float64", "float32"), default="float64",
                   help="dtype of the approximation study (the certificate and finite "
                        "differences run in float64)")
    p.add_argument("--theta", help=".npy file holding a flat theta (docs/math.md §1 layout)")
    p.add_argument("--plot", help="image file: ||grad L_r - G|| against r, per family")
    p.set_defaults(run=verify_command)
    p = commands.add_parser("info", help="build information, threads, whether the CUDA backend is usable")
    p.set_defaults(run=info)
    p = commands.add_parser("train", help="train a network on digits or a regression target")
    add_train_arguments(p)
    p.set_defaults(run=train_command)
    p = commands.add_parser("flow", help="integrate the gradient flow of a small network")
    add_flow_arguments(p)
    p.set_defaults(run=flow_command)
    args = parser.parse_args(argv)
    try:
        status: int = args.run(args)
    except (ImportError, ValueError, TypeError, OSError, FloatingPointError) as error:
        # bad arguments, missing extras, unreadable files, a diverged run: one line, no traceback
        print(_one_line(args.command, error), file=sys.stderr)
        return 2
    return status


if __name__ == "__main__":
    sys.exit(main())
