"""Problems to try the checks on, and the rounding-error scales the checks and the
cross-implementation tests allow."""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from .. import activations
from .. import reference as R
from ..network import Network


def example_problem(net: Network, data: str, samples: int, seed: int = 0,
                    dtype: DTypeLike = np.float64) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(θ, X, Y) for trying the checks.

    ``data="kink"``: integers in [-2, 2] for θ and X (and Y), so that many pre-activations are
    exactly 0, ±1, ... -- on the kinks; ``data="random"``: θ ~ 0.7 N(0, 1), X, Y ~ N(0, 1), which
    hits no kink (almost surely). For cross-entropy Y is one-hot.
    """
    if data not in ("kink", "random"):
        raise ValueError(f"data must be 'kink' or 'random', got {data!r}")
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise ValueError(f"samples must be a positive integer, got {samples!r}")
    rng = np.random.default_rng(seed)
    width_in, width_out = net.widths[0], net.widths[-1]
    if data == "kink":
        theta = rng.integers(-2, 3, size=net.dim).astype(np.float64)
        X = rng.integers(-2, 3, size=(samples, width_in)).astype(np.float64)
    else:
        theta = rng.normal(size=net.dim) * 0.7
        X = rng.normal(size=(samples, width_in))
    if net.loss == "cross_entropy":
        Y = np.eye(width_out)[rng.integers(0, width_out, size=samples)]
    else:
        Y = rng.normal(size=(samples, width_out))
        Y = np.round(Y) if data == "kink" else Y
    return theta.astype(dtype), X.astype(dtype), Y.astype(dtype)


def rounding_scales(theta: ArrayLike, widths: Sequence[int], activation: activations.Activation, X: ArrayLike,
                    Y: ArrayLike, loss: str = "squared_error", sample_weight: Optional[ArrayLike] = None
                    ) -> tuple[list[np.ndarray], float, np.ndarray]:
    """How large the rounding errors of a correct implementation can be, in units of the unit
    roundoff: (per-layer pre-activation error scales, risk error scale, gradient error scale).

    First-order running error analysis: each quantity carries its magnitude and its error; the
    error of a sum is the errors carried in plus the sum of the magnitudes added up, so
    cancellation (a softmax cross-entropy of 1e-9 computed as lse(z) - z_y = 18 - 18, gelu's
    1 + erf(z/sqrt 2) at z = -7, an output 1.1 - 1.1 = 0) does not make a correct result look
    wrong, while a wrong convention or formula still moves results by the size of G itself.
    Multiply by the dtype's eps, and a small safety factor, for error bounds.
    """
    act = activation
    X, Y = np.asarray(X, np.float64), np.asarray(Y, np.float64)
    M = X.shape[0]
    w = np.full(M, 1.0 / M) if sample_weight is None else np.asarray(sample_weight, np.float64)
    params = R.unflatten(theta, widths)
    zs = R.pre_activations(theta, widths, act, X)
    slopes = [np.abs(R.generalized_derivative(act, z)) for z in zs[:-1]]
    curvature = 0.0 if act.piecewise_linear else 1.0      # bounds |a''| of every smooth activation
    h = [np.abs(X)]                                       # magnitudes of h^0, ..., h^{L-1}
    h_error = [h[0]]
    z_error = []
    for k, (W, b) in enumerate(params):
        z_error.append((h[k] + h_error[k]) @ np.abs(W).T + np.abs(b))
        if k < len(params) - 1:
            z = zs[k]
            h.append(np.abs(R.activation_value(act, z)))
            h_error.append(slopes[k] * z_error[k] + h[k + 1] + curvature * np.abs(z))
    Z = zs[-1]
    dloss = np.abs(R.loss_gradient(loss, Z, Y))
    loss_error = np.abs(R.loss_values(loss, Z, Y)) + (dloss * z_error[-1]).sum(axis=1)
    if loss == "cross_entropy":   # lse(z) - z_y cancels; the Hessian in z is bounded by 1
        mass = np.abs(Y).sum(axis=1)
        loss_error += mass * (np.abs(Z).max(axis=1) + 1.0)
        delta_error = w[:, None] * (dloss + mass[:, None] * z_error[-1])
    else:
        delta_error = w[:, None] * (dloss + 2.0 * z_error[-1])
    delta = w[:, None] * dloss
    grads = []
    for k in range(len(params) - 1, -1, -1):
        grads.append(np.concatenate([(delta_error.T @ h[k] + delta.T @ h_error[k]).ravel(),
                                     delta_error.sum(axis=0) + delta.sum(axis=0)]))
        if k > 0:
            W = np.abs(params[k][0])
            back, back_error = delta @ W, (delta_error + delta) @ W
            delta, delta_error = (slopes[k - 1] * back,
                                  slopes[k - 1] * back_error + curvature * z_error[k - 1] * back)
    return z_error, float(np.sum(w * loss_error)), np.concatenate(grads[::-1])
