"""Random calls of the Python API for the fuzz tests (hypothesis, threads) and the atheris
harness: networks with valid and invalid arguments, arrays of random shapes, dtypes, layouts
(Fortran order, steps, negative and zero strides, read-only, lists) and values (NaN, Inf,
subnormals, 1e308). A call may return or raise one of ALLOWED; anything else is a defect.

The randomness comes from a Source (integer(lo, hi) inclusive, and real()), so the same
generator serves hypothesis' draws, atheris' bytes and a seeded NumPy generator.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

import gengrad
from gengrad import activations

ALLOWED = (TypeError, ValueError, MemoryError)

SPECIAL = [math.nan, math.inf, -math.inf, 0.0, -0.0, 5e-324, 1e308, -1e308, 1.0, -2.0]
BAD_WIDTHS = [0, -1, 2**62 + 1, 2.5, True, "3", None, 10**30, np.int64(3)]
ACTIVATIONS = ["relu", "leaky_relu", "hardtanh", "relu6", "abs", "identity", "tanh", "sigmoid",
               "softplus", "gelu", "silu", "leaky_relu(0.2)", "hardtanh(-2, 2)", "clip(-0.5,2)"]
BAD_ACTIVATIONS = ["clip", "relu7", "", None, 3, "leaky_relu(nan)", "relu(1)", "clip(1)", "hardtanh(2,1)",
                   "relu("]
CONVENTIONS = ["left", "right", 0.0, 1.0, -1.0, (1.0, 1.0)]  # valid for some activations
BAD_CONVENTIONS = [0.5, math.nan, (0.0,), "middle", {1: 0.5}, {0.0}]
LOSSES = ["squared_error", "cross_entropy"]
OTHER_DTYPES = [np.float16, np.int64, np.int32, np.bool_, np.complex128, object, "U3"]
# Not "layers": it does not check theta's shape yet (test_fuzz.test_layers_checks_theta).
METHODS = ["forward", "pre_activations", "risk", "risk_and_gradient", "gradient",
           "approx_gradient", "kink_counts", "flatten", "init", "ensemble"]


class NumpySource:
    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)

    def integer(self, lo: int, hi: int) -> int:
        return int(self.rng.integers(lo, hi + 1))

    def real(self) -> float:
        return float(self.rng.normal())


def pick(source: Any, options: list[Any]) -> Any:
    return options[source.integer(0, len(options) - 1)]


def rarely(source: Any, one_in: int = 8) -> bool:
    return source.integer(1, one_in) == 1


def mostly(source: Any, good: list[Any], bad: list[Any], one_in: int = 20) -> Any:
    """One of ``good``, or, one time in ``one_in``, one of ``bad``."""
    return pick(source, bad) if rarely(source, one_in) else pick(source, good)


@dataclass
class Call:
    """fn(*args, **kwargs). ``layout_free``: the result must not depend on the arrays' layout
    (false where an in-place or ``out`` array must itself be contiguous and writeable)."""
    name: str
    fn: Callable[..., Any]
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    layout_free: bool = True

    def run(self) -> Any:
        return self.fn(*self.args, **self.kwargs)

    def copied(self) -> Call:
        """The same call on fresh C-contiguous writeable copies (same values and dtypes)."""
        return Call(self.name, self.fn, [_fresh(v) for v in self.args],
                    {k: _fresh(v) for k, v in self.kwargs.items()}, self.layout_free)


def _fresh(value: Any) -> Any:
    return np.array(value, order="C", copy=True) if isinstance(value, np.ndarray) else value


def random_widths(source: Any) -> list[Any]:
    widths: list[Any] = [source.integer(1, 6) for _ in range(source.integer(2, 5))]
    if rarely(source):
        widths[source.integer(0, len(widths) - 1)] = pick(source, BAD_WIDTHS)
    if rarely(source, 20):
        widths = pick(source, [[], [3], list(range(1, 70)), "23", 7])
    return widths


def random_activation(source: Any) -> Any:
    name = mostly(source, ACTIVATIONS, BAD_ACTIVATIONS)
    if name == "leaky_relu" and rarely(source, 2):
        return activations.leaky_relu(pick(source, [0.1, 0.0, 1.0, -0.5]))
    if name == "clip" and rarely(source, 2):
        return activations.clip(pick(source, [-1.0, 0.0]), pick(source, [1.0, -2.0, 0.0]))
    return name


def random_values(source: Any, size: int, nonnegative: bool = False) -> np.ndarray:
    scale = pick(source, [1.0, 1.0, 1.0, 1e-300, 1e30])
    values = np.array([source.real() * scale for _ in range(min(size, 64))])
    if nonnegative:
        values = np.abs(values)
    values = np.resize(values, size) if size else values[:0]
    if size and rarely(source, 4):
        values[source.integer(0, size - 1)] = pick(source, SPECIAL)
    if rarely(source, 4):  # integer-valued: pre-activations on kinks
        values = np.round(values)
    return values


def random_array(source: Any, shape: tuple[int, ...], dtype: Any, nonnegative: bool = False) -> Any:
    shape = list(shape)
    if rarely(source, 10) and shape:
        shape[source.integer(0, len(shape) - 1)] += pick(source, [-1, 1, 5])
        shape = [max(s, 0) for s in shape]
    if rarely(source, 20):
        shape = pick(source, [shape + [1], shape[1:], [0] + shape[1:], []])
    size = int(np.prod(shape)) if shape else 1
    values = random_values(source, size, nonnegative).reshape(shape)
    if rarely(source, 10):
        dtype = pick(source, OTHER_DTYPES)
    with np.errstate(all="ignore"):
        array = values.astype(dtype)
    layout = source.integer(0, 9)
    if layout == 0:
        return array.tolist()
    if layout == 1 and array.ndim:
        return np.asfortranarray(array)
    if layout == 2 and array.ndim:  # every other element of a larger buffer
        wide = np.zeros((array.shape[0] * 2,) + array.shape[1:], array.dtype)
        wide[::2] = array
        return wide[::2]
    if layout == 3 and array.ndim:  # negative stride
        return np.ascontiguousarray(array[::-1])[::-1]
    if layout == 4 and array.ndim and array.shape[0]:  # zero stride along the first axis
        return np.broadcast_to(array[:1], array.shape)
    if layout == 5:
        array.flags.writeable = False
    return array


def random_call(source: Any) -> Call:
    """A random call; building it may itself raise one of ALLOWED (invalid network)."""
    widths = random_widths(source)
    convention = mostly(source, CONVENTIONS, BAD_CONVENTIONS) if rarely(source, 4) else None
    net = gengrad.Network(widths, random_activation(source), convention,
                          mostly(source, LOSSES, ["hinge"]),
                          mostly(source, ["cpp", "cpp", "cpp", "reference"], ["gpu"]))
    dtype = np.float64 if net.backend == "reference" or rarely(source, 2) else np.float32
    M = pick(source, [1, 1, 3, 7, 33, 0, 130])
    theta = random_array(source, (net.dim,), dtype)
    X = random_array(source, (M, net.widths[0]), dtype)
    Y = random_array(source, (M, net.widths[-1]), dtype)
    if net.loss == "cross_entropy" and rarely(source, 2):
        Y = np.array([source.integer(-1, net.widths[-1]) for _ in range(M)], np.int64)
    weight = None if rarely(source, 2) else random_array(source, (M,), dtype, not rarely(source, 4))
    out = None
    if rarely(source, 4):
        out = random_array(source, (net.dim,), dtype)
        if rarely(source, 3) and isinstance(theta, np.ndarray):
            out = theta  # overlaps an input
    name = pick(source, METHODS)
    if name in ("forward", "pre_activations", "kink_counts"):
        return Call(name, getattr(net, name), [theta, X])
    if name == "risk":
        return Call(name, net.risk, [theta, X, Y, weight])
    if name in ("risk_and_gradient", "gradient"):
        return Call(name, getattr(net, name), [theta, X, Y, weight], {"out": out}, out is None)
    if name == "approx_gradient":
        r = mostly(source, [1.0, 10.0, 1e6, 1e300], [0.0, -1.0, math.nan, math.inf, "10", True])
        family = mostly(source, ["cubic", "sine", "softplus", "shifted_softplus"], ["quadratic"])
        return Call(name, net.approx_gradient, [theta, X, Y, r, family, weight], {"out": out},
                    out is None)
    if name == "flatten":
        layers = [(random_array(source, (rows, cols), dtype), random_array(source, (rows,), dtype))
                  for _, _, rows, cols in net.layout]
        if rarely(source):
            layers = layers[:-1]
        return Call(name, net.flatten, [layers, mostly(source, [np.float64, np.float32], [np.int8, "x"])])
    if name == "init":
        return Call(name, net.init, [mostly(source, [0, 1, 2**70], [-1, 1.5, "0"]),
                                     mostly(source, [np.float64, np.float32], [np.int8, "x"]),
                                     mostly(source, [None, "he_uniform", "glorot_uniform", "torch"], ["zeros"])])
    n = mostly(source, [1, 3], [0, -1, 2.0])
    ens = gengrad.Ensemble(net.widths, n, net.activation, loss=net.loss)
    thetas = random_array(source, (ens.n, ens.dim), dtype)
    if rarely(source, 2):
        return Call("ensemble.step", ens.step, [thetas, X, Y, mostly(source, [0.1], [0.0, -1.0, math.nan])],
                    layout_free=False)
    if rarely(source, 3):  # one X per network, for as many networks or one more or fewer
        networks = ens.n + source.integer(-1, 1)
        Xs = random_array(source, (networks, M, net.widths[0]), dtype)
        method = pick(source, ["forward", "kink_counts"])
        return Call(f"ensemble.{method}", getattr(ens, method), [thetas, Xs])
    if net.loss == "cross_entropy" and rarely(source, 2):  # integer labels per network, or one-hot rows
        rows = pick(source, [(ens.n, M), (M, net.widths[-1])])
        Y = np.array([[source.integer(0, net.widths[-1]) for _ in range(rows[1])] for _ in range(rows[0])], np.int64)
    return Call("ensemble.risk_and_gradient", ens.risk_and_gradient, [thetas, X, Y, weight])


def outcome(call: Call) -> tuple[str, Any]:
    """("ok", result) or ("error", (type, message)); anything not in ALLOWED propagates."""
    try:
        return "ok", call.run()
    except ALLOWED as error:
        return "error", (type(error), str(error))


def same(a: Any, b: Any) -> bool:
    """Bitwise-equal results (NaN equal to NaN)."""
    if isinstance(a, (tuple, list)):
        return isinstance(b, (tuple, list)) and len(a) == len(b) and all(map(same, a, b))
    if isinstance(a, (np.ndarray, float, np.floating)):
        a, b = np.asarray(a), np.asarray(b)
        return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
    return bool(a == b)
