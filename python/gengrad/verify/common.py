"""What the checks share: argument checks, the kink distances of a network on its data, verdict text."""
from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from .. import activations
from ..network import Network

DEFAULT_R = tuple(10.0 ** np.arange(1, 9))
#: K tried in turn when the caller leaves it open: the smallest that puts every kink-hitting
#: pre-activation on its convention's side is the best conditioned.
K_LADDER = (10.0, 100.0, 1000.0, 10000.0)
EPS_DECADES = 5
#: below this slope ||∇L(θ_ε) - G(θ)|| is not O(ε)
MIN_RATE = 0.9


# --- shared pieces ------------------------------------------------------------------------------

def numeric_array(value: ArrayLike, name: str, dtype: Optional[DTypeLike] = None) -> np.ndarray:
    try:
        return np.asarray(value, dtype)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be an array of numbers, got {value!r:.80}") from None


def checked_problem(net: Network, theta: ArrayLike, X: ArrayLike, Y: ArrayLike, sample_weight: Optional[ArrayLike],
             dtype: Optional[DTypeLike] = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, Optional[np.ndarray]]:
    """theta, X, Y and the weights as arrays of one float dtype (theta's unless ``dtype`` is
    given; integer theta counts as float64); integer class labels in Y stay labels."""
    if not isinstance(net, Network):
        raise TypeError(f"net must be a gengrad.Network, got {type(net).__name__}")
    theta = numeric_array(theta, "theta")
    if theta.dtype.kind in "iub":
        theta = theta.astype(np.float64)
    dtype = np.dtype(dtype or theta.dtype)
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"theta must have dtype float32 or float64, got {theta.dtype}")
    if theta.shape != (net.dim,):
        raise ValueError(f"theta must have shape ({net.dim},) for widths {net.widths}, "
                         f"got {theta.shape}")
    Y = numeric_array(Y, "Y")
    Y = Y if Y.dtype.kind in "iu" else numeric_array(Y, "Y", dtype)
    weight = None if sample_weight is None else numeric_array(sample_weight, "sample_weight", dtype)
    return theta.astype(dtype), numeric_array(X, "X", dtype), Y, weight


def parse_ladder(values: ArrayLike, name: str, descending: bool) -> list[float]:
    """A sorted list of positive finite numbers."""
    values = numeric_array(values, name, np.float64).ravel()
    if not values.size or not np.all(np.isfinite(values) & (values > 0)):
        raise ValueError(f"{name} must be positive finite numbers, got {values.tolist()!r}")
    return sorted(values.tolist(), reverse=descending)


def sibling_network(net: Network, convention: activations.Convention = None, backend: Optional[str] = None) -> Network:
    """The same network with another convention or backend."""
    act = net.activation if convention is None else net.activation.with_convention(convention)
    return Network(net.widths, act, loss=net.loss, backend=backend or net.backend)


def kink_offsets(net: Network, theta: np.ndarray, X: np.ndarray) -> list[np.ndarray]:
    """Per hidden layer, z^k - κ_i for every sample, neuron and kink: shape (M, l_k, kinks)."""
    kinks = np.asarray(net.activation.kinks, dtype=theta.dtype)
    return [z[:, :, None] - kinks for z in net.pre_activations(theta, X)[:-1]]


def smallest_nonzero_distance(offsets: Sequence[np.ndarray]) -> float:
    """The smallest nonzero |z - κ| over hidden pre-activations and kinks (inf if none)."""
    distances = [np.abs(o[o != 0]) for o in offsets]
    distances = [d for d in distances if d.size]
    return float(min(d.min() for d in distances)) if distances else math.inf


def kink_margin(offsets: Sequence[np.ndarray]) -> float:
    """The distance of the nearest hidden pre-activation to a kink (0 at a hit; inf if none)."""
    values = [np.abs(o).min() for o in offsets if o.size]
    return float(min(values)) if values else math.inf


def kink_sides(offsets: Sequence[np.ndarray]) -> list[np.ndarray]:
    return [np.sign(o) for o in offsets]


def kink_hits(offsets: Sequence[np.ndarray]) -> int:
    """(sample, neuron) pairs whose pre-activation is exactly at a kink."""
    return int(sum(np.count_nonzero((o == 0).any(axis=2)) for o in offsets))


def rounding_tolerance(dtype: DTypeLike, G: np.ndarray) -> float:
    """Differences this small are summation-order rounding, not mathematics."""
    return float(64 * np.finfo(dtype).eps * max(float(np.linalg.norm(G)), np.finfo(dtype).tiny))


def gradient_scale(net: Network, theta: np.ndarray, X: np.ndarray, Y: np.ndarray,
                    weight: Optional[np.ndarray]) -> float:
    """The size of G's rounding error: the loss derivative (softmax − y, or 2(z − y)) is computed
    with an error of about eps times its terms' size (≤ 1 for cross-entropy, |z| + |y| for the
    squared error), and backpropagation carries it through the network's Jacobian. ||G|| can be
    far smaller (a sample fitted to 1e-15), so rounding must be judged against this instead: the
    gradient with a loss derivative of 1 in every output (the squared error at targets z − ½),
    times the terms' size."""
    Z = net.forward(theta, X)
    unit = Network(net.widths, net.activation, loss="squared_error").gradient(theta, X, Z - 0.5, weight)
    size = 1.0 if net.loss == "cross_entropy" else 1.0 + float(np.max(np.abs(Z), initial=0.0)
                                                              + np.max(np.abs(Y), initial=0.0))
    return float(np.linalg.norm(unit)) * size


def format_number(x: float) -> str:
    return "0" if x == 0 else f"{x:.3g}"


def verdict_text(passed: bool) -> str:
    return "passed" if passed else "FAILED"
