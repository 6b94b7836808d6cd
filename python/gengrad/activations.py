"""Activations, their kink conventions and approximant families (docs/math.md §3).

This module is the one place that says, for every named activation, where its kinks are,
what the one-sided slopes around them are, and which one-sided derivative the generalized
derivative takes at each kink (the *convention*). The C++ core evaluates piecewise-linear
activations from exactly these numbers; the NumPy reference recomputes values and derivatives
from its own formulas and is checked against them.
"""
from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass
from numbers import Real
from typing import Callable, Sequence, Union

SMOOTH = ("tanh", "sigmoid", "softplus", "gelu", "silu")
PIECEWISE_LINEAR = ("relu", "leaky_relu", "hardtanh", "clip", "relu6", "abs", "identity")
NAMES = PIECEWISE_LINEAR + SMOOTH

#: Approximant families A_r. Admissible ones differ from the activation only in a one-sided
#: window of width 1/r on the side whose derivative is not the convention; the softplus
#: families are non-admissible comparisons (their limits need not be the convention).
FAMILIES = {"cubic": True, "sine": True, "shifted_softplus": False, "softplus": False}


@dataclass(frozen=True)
class Activation:
    """An activation with its generalized-derivative convention.

    ``kinks`` are the points where the activation is not differentiable, ``slopes`` the slopes
    of the linear pieces between them (``len(kinks) + 1`` of them; empty for smooth
    activations), ``value_at_first_kink`` pins the piecewise-linear function down, and
    ``right_sided[i]`` says whether the generalized derivative at ``kinks[i]`` is the right
    derivative ``slopes[i + 1]`` (True) or the left one ``slopes[i]`` (False).
    """

    name: str
    params: tuple[float, ...] = ()
    kinks: tuple[float, ...] = ()
    slopes: tuple[float, ...] = ()
    value_at_first_kink: float = 0.0
    right_sided: tuple[bool, ...] = ()

    @property
    def piecewise_linear(self) -> bool:
        return self.name in PIECEWISE_LINEAR

    @property
    def derivative_at_kinks(self) -> tuple[float, ...]:
        """The convention: the generalized derivative's value at each kink."""
        return tuple(self.slopes[i + side] for i, side in enumerate(self.right_sided))

    def __post_init__(self) -> None:
        """Refuses definitions the core cannot evaluate, naming the field (the constructors below
        and activations.get build valid ones; this guards direct construction)."""
        if self.name not in NAMES:
            raise ValueError(f"unknown activation {self.name!r}; expected one of {', '.join(NAMES)}")
        for field in ("params", "kinks", "slopes"):
            for value in getattr(self, field):
                _finite(f"Activation {field}", value)
        _finite("Activation value_at_first_kink", self.value_at_first_kink)
        if self.name in PIECEWISE_LINEAR:
            if len(self.kinks) > 2 or len(self.slopes) != len(self.kinks) + 1:
                raise ValueError(f"Activation {self.name}: at most two kinks and one slope more than kinks, got "
                                 f"kinks={self.kinks}, slopes={self.slopes}")
            if list(self.kinks) != sorted(set(self.kinks)):
                raise ValueError(f"Activation {self.name}: kinks must increase, got {self.kinks}")
        elif self.kinks or self.slopes:
            raise ValueError(f"Activation {self.name} is smooth: no kinks or slopes, got {self.kinks}, {self.slopes}")
        if len(self.right_sided) != len(self.kinks) or not all(isinstance(s, bool) for s in self.right_sided):
            raise ValueError(f"Activation right_sided must hold one bool per kink, got {self.right_sided}")
        if not _BUILDING:
            self._check_against_its_name()

    def _check_against_its_name(self) -> None:
        """The numbers must be those of the named activation with these params: the core
        evaluates the numbers, the reference the name."""
        global _BUILDING
        _BUILDING = True
        try:
            expected = _CONSTRUCTORS[self.name](*self.params)
        except (TypeError, ValueError) as error:
            raise ValueError(f"Activation {self.name} does not take params {self.params}: {error}") from None
        finally:
            _BUILDING = False
        got = (self.kinks, self.slopes, self.value_at_first_kink)
        if got != (expected.kinks, expected.slopes, expected.value_at_first_kink):
            raise ValueError(f"Activation {self.name}{self.params or ''} has kinks {expected.kinks}, slopes "
                             f"{expected.slopes} and value {expected.value_at_first_kink:g} at the first kink; "
                             f"got {got} (build it with gengrad.activations.get or its constructor)")

    def with_convention(self, convention: Convention) -> Activation:
        return _with_convention(self, convention)

    def __str__(self) -> str:
        args = ", ".join(f"{p:g}" for p in self.params)
        text = f"{self.name}({args})" if args else self.name
        if self.kinks:
            at = ", ".join(f"a'({k:g})={d:g}" for k, d in zip(self.kinks, self.derivative_at_kinks))
            text += f" [{at}]"
        return text


Convention = Union[None, str, float, Sequence[float]]

# True while a constructor below builds an Activation, which is then right by construction.
_BUILDING = False


def _finite(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(float(value)):
        raise ValueError(f"{name} must be a finite real number, got {value!r}")
    return float(value)


def _piecewise(name: str, params: tuple[float, ...], kinks: tuple[float, ...], slopes: tuple[float, ...],
               value_at_first_kink: float, default_right: tuple[bool, ...]) -> Activation:
    return Activation(name, tuple(params), tuple(kinks), tuple(slopes),
                      float(value_at_first_kink), tuple(default_right))


# --- the named activations: kinks, slopes and default conventions (docs/math.md §3) ----------------

def relu() -> Activation:
    """max(z, 0); relu'(0) = 0 by default, as PyTorch, JAX and TensorFlow."""
    return _piecewise("relu", (), (0.0,), (0.0, 1.0), 0.0, (False,))


def leaky_relu(alpha: float = 0.01) -> Activation:
    """z for z >= 0, alpha*z below; leaky_relu'(0) = alpha by default (PyTorch; JAX uses 1)."""
    alpha = _finite("alpha", alpha)
    if alpha == 1.0:
        raise ValueError("alpha must differ from 1 (leaky_relu with alpha=1 is the identity)")
    return _piecewise("leaky_relu", (alpha,), (0.0,), (alpha, 1.0), 0.0, (False,))


def hardtanh(lo: float = -1.0, hi: float = 1.0) -> Activation:
    """clip(z, lo, hi); derivative 0 at both bounds by default (the saturated side, torch >= 2.14)."""
    lo, hi = _finite("lo", lo), _finite("hi", hi)
    if not lo < hi:
        raise ValueError(f"hardtanh needs lo < hi, got lo={lo:g}, hi={hi:g}")
    return _piecewise("hardtanh", (lo, hi), (lo, hi), (0.0, 1.0, 0.0), lo, (False, True))


def clip(lo: float, hi: float) -> Activation:
    """clip(z, lo, hi) with explicit bounds; the same conventions as hardtanh."""
    return _renamed(hardtanh(lo, hi), "clip")


def relu6() -> Activation:
    """clip(z, 0, 6); derivative 0 at 0 and at 6 by default."""
    return _renamed(hardtanh(0.0, 6.0), "relu6", params=())


def abs() -> Activation:  # noqa: A001 - the activation's name
    """The absolute value; abs'(0) = +1 by default (JAX's value; -1 selectable; PyTorch's 0 is not allowed)."""
    return _piecewise("abs", (), (0.0,), (-1.0, 1.0), 0.0, (True,))


def identity() -> Activation:
    """z; no kinks."""
    return _piecewise("identity", (), (), (1.0,), 0.0, ())


def _renamed(act: Activation, name: str, params: tuple[float, ...] | None = None) -> Activation:
    return Activation(name, act.params if params is None else params, act.kinks, act.slopes,
                      act.value_at_first_kink, act.right_sided)


def _smooth(name: str) -> Activation:
    return Activation(name)


_CONSTRUCTORS: dict[str, Callable[..., Activation]] = {
    "relu": relu, "leaky_relu": leaky_relu, "hardtanh": hardtanh, "clip": clip,
    "relu6": relu6, "abs": abs, "identity": identity,
    **{name: functools.partial(_smooth, name) for name in SMOOTH},
}


def _with_convention(act: Activation, convention: Convention) -> Activation:
    if convention is None:
        return act
    if not act.kinks:
        raise ValueError(f"convention={convention!r} given, but activation {act.name} has no "
                         "kinks; leave convention=None")
    n = len(act.kinks)
    if isinstance(convention, str):
        if convention not in ("left", "right"):
            raise ValueError(f"convention must be 'left', 'right', a number or one number per "
                             f"kink, got {convention!r}")
        return _with_sides(act, (convention == "right",) * n)
    values: list[object]
    if isinstance(convention, Real):
        values = [convention] * n
    elif isinstance(convention, (list, tuple)) or getattr(convention, "ndim", None) == 1:
        values = list(convention)  # type: ignore[arg-type]  # a 1-D NumPy array
    else:
        raise TypeError(f"convention must be None, 'left', 'right', a number or a list of numbers (one per "
                        f"kink), got {type(convention).__name__}")
    if len(values) != n:
        raise ValueError(f"convention for {act.name} needs {n} value(s), one per kink at "
                         f"{act.kinks}, got {len(values)}")
    sides = []
    for kink, left, right, given in zip(act.kinks, act.slopes, act.slopes[1:], values):
        value = _finite("convention", given)
        if value not in (left, right):
            between = min(left, right) < value < max(left, right)
            reason = (" (a value strictly between the one-sided derivatives need not give a "
                      "limiting Frechet subgradient, docs/math.md §6)" if between else "")
            raise ValueError(f"convention {value:g} at the kink {kink:g} of {act.name} must be "
                             f"one of the one-sided derivatives {left:g} (left) or {right:g} "
                             f"(right){reason}")
        sides.append(value != left)
    return _with_sides(act, tuple(sides))


def _with_sides(act: Activation, sides: tuple[bool, ...]) -> Activation:
    return Activation(act.name, act.params, act.kinks, act.slopes, act.value_at_first_kink, sides)


def get(activation: str | Activation, convention: Convention = None) -> Activation:
    """The Activation named by ``activation`` with ``convention``: an Activation, a name, or a
    name with parameters as the constructors take them: ``leaky_relu(0.2)``, ``hardtanh(-2, 2)``,
    ``clip(-0.5, 2)`` (the syntax of every ``--activation`` option of the command line).

    ``convention`` is None (the default convention), ``"left"``/``"right"`` (that one-sided
    derivative at every kink), a number (the generalized derivative's value at every kink), or
    one number per kink. Values strictly between the one-sided derivatives are rejected.
    """
    if isinstance(activation, Activation):
        return activation.with_convention(convention)
    if not isinstance(activation, str):
        raise TypeError(f"activation must be a name or a gengrad.activations.Activation, got "
                        f"{type(activation).__name__}")
    if "(" in activation or ")" in activation:
        return _parse(activation).with_convention(convention)
    activation = activation.strip()
    if activation not in _CONSTRUCTORS:
        raise ValueError(f"unknown activation {activation!r}; expected one of {', '.join(NAMES)}")
    if activation == "clip":
        raise ValueError("activation 'clip' needs bounds: use gengrad.activations.clip(lo, hi)")
    return _CONSTRUCTORS[activation]().with_convention(convention)


def _parse(text: str) -> Activation:
    match = re.fullmatch(r"\s*(\w+)\s*\((.*)\)\s*", text)
    if not match:
        raise ValueError(f"activation must be a name or name(parameters), got {text!r}")
    name, args = match.groups()
    if name not in _CONSTRUCTORS:
        raise ValueError(f"unknown activation {name!r}; expected one of {', '.join(NAMES)}")
    parametrised = ("leaky_relu", "hardtanh", "clip")
    if name not in parametrised:
        raise ValueError(f"activation {name!r} takes no parameters; parameters are for "
                         f"{', '.join(parametrised)}")
    try:
        params = [float(a) for a in args.split(",")]
    except ValueError:
        raise ValueError(f"activation parameters must be numbers, got {args!r}") from None
    try:
        return _CONSTRUCTORS[name](*params)
    except TypeError as error:
        raise ValueError(f"activation {text!r}: {error}") from None


def check_family(family: str) -> str:
    if family not in FAMILIES:
        raise ValueError(f"unknown approximant family {family!r}; expected one of "
                         f"{', '.join(FAMILIES)}")
    return family
