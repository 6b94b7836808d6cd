"""The NumPy float64 reference: docs/math.md written as code.

Everything here is the plain reading of the specification (docs/math.md §1-§4): loops over layers,
one formula per activation, no speed tricks. It is the oracle the C++ core and every other
implementation are tested against, so it depends on nothing but NumPy, ``math`` and the
activation spec objects of :mod:`gengrad.activations`.

Conventions (docs/math.md §1-§2): ``X`` has shape (M, l_0), ``Y`` shape (M, l_L); z^1 = W_1 x + b_1,
h^k = a(z^k) for k < L, z^{k+1} = W_{k+1} h^k + b_{k+1}; the output z^L is affine. The risk is
sum_m w_m loss(z^L_m, y_m) with sample weights w (a finite measure), by default w_m = 1/M.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any, Optional

import numpy as np
from numpy.typing import ArrayLike

from gengrad import activations as _activations
from gengrad.activations import Activation

LOSSES = ("squared_error", "cross_entropy")
Elementwise = Callable[[np.ndarray], np.ndarray]


# --- §1: networks and the flat parameter vector -------------------------------------------------

def _check_widths(widths: Iterable[int]) -> tuple[int, ...]:
    widths = tuple(widths)
    if len(widths) < 2:
        raise ValueError(f"widths needs at least an input and an output width, got {widths!r}")
    for w in widths:
        if isinstance(w, bool) or int(w) != w or w < 1:
            raise ValueError(f"widths must be positive integers, got {widths!r}")
    return tuple(int(w) for w in widths)


def layout(widths: Iterable[int]) -> list[tuple[int, int, int, int]]:
    """Per layer k = 1..L: (weight_offset, bias_offset, rows = l_k, cols = l_{k-1}) (docs/math.md §1).

    Layer by layer; within a layer first W_k in row-major order (row = output neuron), then b_k.
    """
    widths = _check_widths(widths)
    blocks = []
    offset = 0
    for k in range(1, len(widths)):
        rows, cols = widths[k], widths[k - 1]
        blocks.append((offset, offset + rows * cols, rows, cols))
        offset += rows * (cols + 1)
    return blocks


def dim(widths: Iterable[int]) -> int:
    """d = sum_{k=1..L} l_k (l_{k-1} + 1) (docs/math.md §1)."""
    widths = _check_widths(widths)
    return sum(widths[k] * (widths[k - 1] + 1) for k in range(1, len(widths)))


def unflatten(theta: ArrayLike, widths: Iterable[int]) -> list[tuple[np.ndarray, np.ndarray]]:
    """[(W_k of shape (l_k, l_{k-1}), b_k of shape (l_k,)) for k = 1..L] (docs/math.md §1).

    The blocks are views of the float64 vector (of a float64 copy if ``theta`` was not one).
    """
    theta = np.asarray(theta, dtype=np.float64)
    d = dim(widths)
    if theta.shape != (d,):
        raise ValueError(f"theta must have shape ({d},) for widths {tuple(widths)}, "
                         f"got {theta.shape}")
    params = []
    for w_off, b_off, rows, cols in layout(widths):
        params.append((theta[w_off:b_off].reshape(rows, cols), theta[b_off:b_off + rows]))
    return params


def _flatten(blocks: Iterable[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    return np.concatenate([np.concatenate([W.ravel(), b]) for W, b in blocks])


# --- §3: activations and their generalized derivatives -----------------------------------------

def _sigmoid(z: np.ndarray) -> np.ndarray:
    # exp of a non-positive argument only, so neither branch overflows
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


# Phi(z) = erfc(-z / sqrt 2) / 2: the form without 1 + erf's cancellation for negative z
_erfc = np.vectorize(math.erfc, otypes=[np.float64])


def _pl_bounds(act: Activation) -> tuple[float, float]:
    lo, hi = act.kinks
    return lo, hi


def activation_value(act: Activation, z: ArrayLike) -> np.ndarray:
    """a(z), each named activation by its own formula (docs/math.md §3)."""
    z = np.asarray(z, dtype=np.float64)
    name = act.name
    if name == "relu":
        return np.maximum(z, 0.0)
    if name == "leaky_relu":
        alpha = act.params[0]
        return np.where(z >= 0, z, alpha * z)
    if name in ("hardtanh", "clip", "relu6"):
        lo, hi = _pl_bounds(act)
        return np.clip(z, lo, hi)
    if name == "abs":
        return np.abs(z)
    if name == "identity":
        return z.copy()
    if name == "tanh":
        return np.tanh(z)
    if name == "sigmoid":
        return _sigmoid(z)
    if name == "softplus":
        return np.logaddexp(0.0, z)
    if name == "gelu":
        return 0.5 * z * _erfc(-z / math.sqrt(2.0))
    if name == "silu":
        return z * _sigmoid(z)
    raise ValueError(f"unknown activation {name!r}")


def _derivative_off_kinks(act: Activation, z: np.ndarray) -> np.ndarray:
    """a'(z) wherever a is differentiable; the value returned at a kink is meaningless."""
    name = act.name
    if name == "relu":
        return np.where(z > 0, 1.0, 0.0)
    if name == "leaky_relu":
        alpha = act.params[0]
        return np.where(z > 0, 1.0, alpha)
    if name in ("hardtanh", "clip", "relu6"):
        lo, hi = _pl_bounds(act)
        return np.where((z > lo) & (z < hi), 1.0, 0.0)
    if name == "abs":
        return np.sign(z)
    if name == "identity":
        return np.ones_like(z)
    if name == "tanh":
        return 1.0 - np.tanh(z) ** 2
    if name == "sigmoid":
        s = _sigmoid(z)
        return s * (1.0 - s)
    if name == "softplus":
        return _sigmoid(z)
    if name == "gelu":
        return (0.5 * _erfc(-z / math.sqrt(2.0))
                + z * np.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi))
    if name == "silu":
        s = _sigmoid(z)
        return s + z * s * (1.0 - s)
    raise ValueError(f"unknown activation {name!r}")


def generalized_derivative(act: Activation, z: ArrayLike) -> np.ndarray:
    """𝔞(z): a'(z) off the kinks, the convention ``act.derivative_at_kinks[i]`` at kinks[i]
    (docs/math.md §3)."""
    z = np.asarray(z, dtype=np.float64)
    d = _derivative_off_kinks(act, z)
    for kappa, convention in zip(act.kinks, act.derivative_at_kinks):
        d = np.where(z == kappa, convention, d)
    return d


# --- §3: approximant families A_r -------------------------------------------------------------

def _cubic(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return 2.0 * t ** 2 - t ** 3, 4.0 * t - 3.0 * t ** 2


def _sine(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return (0.5 * t ** 2 + 0.25 * (1.0 - np.cos(np.pi * t)),
            t + 0.25 * np.pi * np.sin(np.pi * t))


#: Admissible profiles: Phi(0) = 0, Phi(1) = 1, phi = Phi', phi(0) = 0, phi(1) = 1.
_PROFILES: dict[str, Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]] = {"cubic": _cubic, "sine": _sine}


def _check_r(r: Any) -> float:
    try:
        r = float(r)
    except (TypeError, ValueError):
        raise ValueError(f"r must be a positive finite number, got {r!r}") from None
    if not (math.isfinite(r) and r > 0):
        raise ValueError(f"r must be a positive finite number, got {r!r}")
    return r


def _admissible(act: Activation, z: np.ndarray, r: float, family: str) -> tuple[np.ndarray, np.ndarray]:
    """(A_r(z), A_r'(z)) of an admissible family: a plus one correction per kink.

    For the kink kappa with slopes sL | sR, jump = sR - sL, the correction jump (Phi(t) - t) / r
    lives in the window on the side whose derivative is NOT the convention:
      left convention:  z in (kappa, kappa + 1/r), t = r (z - kappa), A_r' = sL + jump phi(t);
      right convention: z in (kappa - 1/r, kappa), t = r (kappa - z), A_r' = sR - jump phi(t).
    A_r' is computed as 𝔞 plus the derivative of each correction, which is the formula above
    inside a window once the windows are disjoint (1/r below the smallest kink gap).
    """
    profile = _PROFILES[family]
    value = activation_value(act, z)
    slope = generalized_derivative(act, z)
    for kappa, s_left, s_right, right in zip(act.kinks, act.slopes, act.slopes[1:],
                                             act.right_sided):
        jump = s_right - s_left
        t = r * (kappa - z) if right else r * (z - kappa)
        inside = (t > 0) & (t < 1)
        # outside the window t is clipped only to keep the profile's arithmetic harmless
        Phi, phi = profile(np.clip(t, 0.0, 1.0))
        value = value + np.where(inside, jump * (Phi - t) / r, 0.0)
        d_correction = jump * (1.0 - phi) if right else jump * (phi - 1.0)
        slope = slope + np.where(inside, d_correction, 0.0)
    return value, slope


def _softplus_family(act: Activation, z: np.ndarray, r: float, family: str
                     ) -> tuple[np.ndarray, np.ndarray]:
    """(A_r(z), A_r'(z)) for the non-admissible "softplus" / "shifted_softplus" families.

    a(z) = a(kappa_0) + s_0 (z - kappa_0) + sum_i (s_{i+1} - s_i) relu(z - kappa_i), with relu(u)
    replaced by S_r(u) = softplus(r u + shift) / r, S_r'(u) = sigmoid(r u + shift); shift = 0
    ("softplus", S_r'(0) = 1/2 for all r) or -+log r for a left/right convention at kappa_i
    ("shifted_softplus", S_r'(0) -> the convention).
    """
    kappa0 = act.kinks[0]
    value = activation_value(act, kappa0) + act.slopes[0] * (z - kappa0)
    slope = np.full_like(z, act.slopes[0])
    for kappa, s_left, s_right, right in zip(act.kinks, act.slopes, act.slopes[1:],
                                             act.right_sided):
        if family == "softplus":
            shift = 0.0
        else:
            shift = math.log(r) if right else -math.log(r)
        u = r * (z - kappa) + shift
        value = value + (s_right - s_left) * np.logaddexp(0.0, u) / r
        slope = slope + (s_right - s_left) * _sigmoid(u)
    return value, slope


def _approximant(act: Activation, z: ArrayLike, r: Any, family: str) -> tuple[np.ndarray, np.ndarray]:
    _activations.check_family(family)
    r = _check_r(r)
    z = np.asarray(z, dtype=np.float64)
    if not act.kinks:
        # smooth activations and the identity are their own approximants
        return activation_value(act, z), generalized_derivative(act, z)
    if family in _PROFILES:
        return _admissible(act, z, r, family)
    return _softplus_family(act, z, r, family)


def approximant_value(act: Activation, z: ArrayLike, r: Any, family: str) -> np.ndarray:
    """A_r(z) of the named approximant family (docs/math.md §3)."""
    return _approximant(act, z, r, family)[0]


def approximant_derivative(act: Activation, z: ArrayLike, r: Any, family: str) -> np.ndarray:
    """A_r'(z) of the named approximant family (docs/math.md §3)."""
    return _approximant(act, z, r, family)[1]


# --- §1: the realization ----------------------------------------------------------------------

def _check_data(X: ArrayLike, widths: Iterable[int], name: str, width: int) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] != width:
        raise ValueError(f"{name} must have shape (M, {width}) for widths {tuple(widths)}, "
                         f"got {X.shape}")
    return X


def _forward(params: list[tuple[np.ndarray, np.ndarray]], value: Elementwise, X: np.ndarray) -> list[np.ndarray]:
    """[z^1, ..., z^L] of the network whose activation values are ``value(z)``."""
    zs = []
    h = X
    for k, (W, b) in enumerate(params):
        z = h @ W.T + b
        zs.append(z)
        if k < len(params) - 1:
            h = value(z)
    return zs


def pre_activations(theta: ArrayLike, widths: Iterable[int], act: Activation, X: ArrayLike) -> list[np.ndarray]:
    """[z^1, ..., z^L], z^k of shape (M, l_k); z^L is the output (docs/math.md §1)."""
    params = unflatten(theta, widths)
    X = _check_data(X, widths, "X", tuple(widths)[0])
    return _forward(params, lambda z: activation_value(act, z), X)


def forward(theta: ArrayLike, widths: Iterable[int], act: Activation, X: ArrayLike) -> np.ndarray:
    """The network output z^L, shape (M, l_L) (docs/math.md §1)."""
    return pre_activations(theta, widths, act, X)[-1]


# --- §2: losses and risk ----------------------------------------------------------------------

def _check_loss(loss: str) -> str:
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}; expected one of {', '.join(LOSSES)}")
    return loss


def _logsumexp(Z: np.ndarray) -> np.ndarray:
    m = np.max(Z, axis=1, keepdims=True)
    return (m + np.log(np.sum(np.exp(Z - m), axis=1, keepdims=True)))[:, 0]


def loss_values(loss: str, Z: ArrayLike, Y: ArrayLike) -> np.ndarray:
    """Per-sample loss, shape (M,) (docs/math.md §2).

    squared_error: ||z - y||^2 (summed over outputs). cross_entropy: sum_j y_j (lse(z) - z_j),
    the softmax cross-entropy against the target distribution y.
    """
    _check_loss(loss)
    Z, Y = np.asarray(Z, dtype=np.float64), np.asarray(Y, dtype=np.float64)
    if Z.ndim != 2 or Z.shape != Y.shape:
        raise ValueError(f"Z and Y must be 2-D of one shape, got {Z.shape} and {Y.shape}")
    if loss == "squared_error":
        return np.sum((Z - Y) ** 2, axis=1)
    return _logsumexp(Z) * np.sum(Y, axis=1) - np.sum(Y * Z, axis=1)


def loss_gradient(loss: str, Z: ArrayLike, Y: ArrayLike) -> np.ndarray:
    """d loss / d z per sample, shape (M, l_L) (docs/math.md §2)."""
    _check_loss(loss)
    Z, Y = np.asarray(Z, dtype=np.float64), np.asarray(Y, dtype=np.float64)
    if Z.ndim != 2 or Z.shape != Y.shape:
        raise ValueError(f"Z and Y must be 2-D of one shape, got {Z.shape} and {Y.shape}")
    if loss == "squared_error":
        return 2.0 * (Z - Y)
    softmax = np.exp(Z - _logsumexp(Z)[:, None])
    return softmax * np.sum(Y, axis=1, keepdims=True) - Y


def _weights(sample_weight: Optional[ArrayLike], M: int) -> np.ndarray:
    if sample_weight is None:
        return np.full(M, 1.0 / M)
    w = np.asarray(sample_weight, dtype=np.float64)
    if w.shape != (M,):
        raise ValueError(f"sample_weight must have shape ({M},), got {w.shape}")
    if not (np.all(np.isfinite(w)) and np.all(w >= 0)):
        raise ValueError("sample_weight must be finite and non-negative (a finite measure)")
    return w


def risk(theta: ArrayLike, widths: Iterable[int], act: Activation, X: ArrayLike, Y: ArrayLike,
         loss: str = "squared_error", sample_weight: Optional[ArrayLike] = None) -> float:
    """L(theta) = sum_m w_m loss(z^L(x_m), y_m), by default w_m = 1/M (docs/math.md §2)."""
    Z = forward(theta, widths, act, X)
    Y = _check_data(Y, widths, "Y", tuple(widths)[-1])
    w = _weights(sample_weight, Z.shape[0])
    return float(np.sum(w * loss_values(loss, Z, Y)))


# --- §4: the generalized gradient -------------------------------------------------------------

def _backprop(theta: ArrayLike, widths: Iterable[int], value: Elementwise, derivative: Elementwise, X: ArrayLike,
              Y: ArrayLike, loss: str, sample_weight: Optional[ArrayLike]) -> np.ndarray:
    """Backpropagation with activation values ``value`` and derivative ``derivative`` (MATH §4):
    delta^L = w_m dloss/dz^L; delta^k = derivative(z^k) * (W_{k+1}^T delta^{k+1});
    dL/dW_k = sum_m delta^k (h^{k-1})^T; dL/db_k = sum_m delta^k; h^0 = x."""
    _check_loss(loss)
    params = unflatten(theta, widths)
    X = _check_data(X, widths, "X", tuple(widths)[0])
    Y = _check_data(Y, widths, "Y", tuple(widths)[-1])
    w = _weights(sample_weight, X.shape[0])
    zs = _forward(params, value, X)
    hs = [X] + [value(z) for z in zs[:-1]]          # h^0, ..., h^{L-1}
    L = len(params)
    delta = w[:, None] * loss_gradient(loss, zs[-1], Y)
    grads: list[Any] = [None] * L
    for k in range(L - 1, -1, -1):                  # 0-based: layer k+1 of MATH
        grads[k] = (delta.T @ hs[k], np.sum(delta, axis=0))
        if k > 0:
            W = params[k][0]
            delta = derivative(zs[k - 1]) * (delta @ W)
    return _flatten(grads)


def generalized_gradient(theta: ArrayLike, widths: Iterable[int], act: Activation, X: ArrayLike, Y: ArrayLike,
                         loss: str = "squared_error", sample_weight: Optional[ArrayLike] = None) -> np.ndarray:
    """G(theta), shape (d,): backpropagation with a' replaced by 𝔞 (docs/math.md §4)."""
    return _backprop(theta, widths,
                     lambda z: activation_value(act, z),
                     lambda z: generalized_derivative(act, z),
                     X, Y, loss, sample_weight)


def approx_gradient(theta: ArrayLike, widths: Iterable[int], act: Activation, X: ArrayLike, Y: ArrayLike, r: Any,
                    family: str = "cubic", loss: str = "squared_error",
                    sample_weight: Optional[ArrayLike] = None) -> np.ndarray:
    """grad L_r(theta): the gradient of the risk of the network with a replaced by A_r
    (A_r forward, A_r' backward; docs/math.md §3-§4)."""
    _activations.check_family(family)
    r = _check_r(r)
    return _backprop(theta, widths,
                     lambda z: approximant_value(act, z, r, family),
                     lambda z: approximant_derivative(act, z, r, family),
                     X, Y, loss, sample_weight)


def kink_counts(theta: ArrayLike, widths: Iterable[int], act: Activation, X: ArrayLike) -> np.ndarray:
    """Per hidden layer k = 1..L-1, the number of (sample, neuron) pairs whose pre-activation
    equals one of ``act.kinks`` exactly (docs/math.md §6); int64, shape (L-1,)."""
    zs = pre_activations(theta, widths, act, X)
    counts = []
    for z in zs[:-1]:                               # the affine output layer has no kinks
        counts.append(sum(int(np.count_nonzero(z == kappa)) for kappa in act.kinks))
    return np.array(counts, dtype=np.int64)
