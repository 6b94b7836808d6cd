"""`gengrad narrow`: Park 2024's four-parameter network (gengrad.narrow; the narrow extra)."""
from __future__ import annotations

import argparse
import sys


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser("narrow", help="Park 2024's four-parameter network: flow, normal variational "
                                 "equation, its Galois group by monodromy or Stokes data, non-integrability verdict")
    parser.add_argument("--architecture", help="tanh and identity: biased (f = v σ(wx + b) + c, the default) or "
                        "bias_free (f = v1 σ(w1 x) + v2 σ(w2 x))")
    parser.add_argument("--activation", default="tanh", help="tanh, identity (odd: monodromy of a Fuchsian NVE), "
                        "softplus, sigmoid (f = a1 σ(w1 x) + a2 σ(w2 x)), silu, gelu (f = v σ(wx + b) + c at "
                        "σ'(b) = 0): Stokes data of an NVE irregular at ∞")
    parser.add_argument("--target", help="tanh and identity: y* > 0 of the data (1, y*), (-1, -y*); e.g. 1 (the "
                        "default) or 1/2")
    parser.add_argument("--digits", type=int, help="tanh and identity: digits of the fine monodromy integration "
                        "(default 30; 0: double precision only)")
    parser.add_argument("--no-contrasts", action="store_true", help="skip the contrast models (the controls)")
    parser.add_argument("--certify", action="store_true", help="prove the verdict in ball arithmetic (the certify "
                        "extra: python-flint): tanh and identity by enclosing the monodromy, the others by the "
                        "trace identity of their Stokes data")
    parser.add_argument("--bits", type=int, default=128, help="with --certify: truncation 2^-bits a step (tanh, "
                        "identity) or the balls' precision (the others)")
    parser.set_defaults(run=narrow)


def narrow(args: argparse.Namespace) -> int:
    """Park 2024's narrow network: the derivation, the monodromy evidence and the verdict."""
    from .. import narrow as park  # needs the narrow extra (sympy, mpmath, scipy)

    try:
        if args.activation in park.CONSTRUCTIONS:
            given = [f"--{name}" for name in ("architecture", "target", "digits") if getattr(args, name) is not None]
            if given:
                raise ValueError(f"{', '.join(given)} {'applies' if len(given) == 1 else 'apply'} to tanh and "
                                 f"identity only; {args.activation} takes the "
                                 f"{park.CONSTRUCTIONS[args.activation]} construction")
            if args.certify:
                stokes = park.certify_stokes(args.activation, bits=args.bits)
                park.report_stokes_certificate(stokes)
                if not args.no_contrasts:
                    park.report_stokes_certificate(park.certify_stokes(park.relaxation_model(args.activation, True),
                                                                       bits=args.bits))
                return 0 if stokes.verdict == "certified" else 1
            park.report_relaxation(args.activation, controls=not args.no_contrasts)
        elif args.certify:
            model = park.model(args.architecture or "biased", args.activation, args.target or "1")
            certificate = park.certify(park.derive(model), bits=args.bits)
            print(f"model: {model}")
            park.report_certificate(certificate)
            return 0 if certificate.verdict == "certified" else 1
        else:
            digits = 30 if args.digits is None else args.digits
            park.report(args.architecture or "biased", args.activation, args.target or "1",
                        digits=digits or None, contrasts=not args.no_contrasts)
    except (TypeError, ValueError) as error:
        print(f"gengrad narrow: {error}", file=sys.stderr)
        return 2
    return 0
