import numpy as np
import pytest

import gengrad
from gengrad import activations, verify

# (activation, convention): every named activation, each kinked one with a non-default side too.
ACTIVATIONS = [
    ("relu", None), ("relu", 1.0),
    (activations.leaky_relu(0.25), None), (activations.leaky_relu(0.25), "right"),
    ("hardtanh", None), ("hardtanh", (1.0, 1.0)), (activations.clip(-0.5, 2.0), "left"),
    ("relu6", None), ("abs", None), ("abs", -1.0), ("identity", None),
    ("tanh", None), ("sigmoid", None), ("softplus", None), ("gelu", None), ("silu", None),
]
ACTIVATION_IDS = [f"{a if isinstance(a, str) else a.name + str(a.params)}-{c}" for a, c in ACTIVATIONS]


# MATH.md §6: widths (1,1,1), θ = (w, b, v, c) = (1, 0, -1, 1), one datum (0, 0). The limiting
# subdifferential is {(0,0,0,2), (0,-2,0,2)}: G for relu'(0) = 0 and 1; the 1/2-rule gives
# (0,-1,0,2), a Clarke but not a limiting Fréchet subgradient.
MATH6_EXAMPLE = ((1, 1, 1), np.array([1.0, 0.0, -1.0, 1.0]), np.array([[0.0]]), np.array([[0.0]]))
MATH6_LIMITS = {0.0: np.array([0.0, 0.0, 0.0, 2.0]), 1.0: np.array([0.0, -2.0, 0.0, 2.0])}

# dereich2025.md §4.3(a): widths (1,2,1,1), W1 = (1, 2)^T, b1 = 0, W2 = (-2, 1), b2 = 0, v = 1,
# c = 0.5 on x in {1, 2}: the layer-2 pre-activation -2 relu(x) + relu(2x) cancels to 0 on both
# samples, and the shifted softplus converges to the 1/2-rule there, not to G.
CANCELLATION_EXAMPLE = ((1, 2, 1, 1), np.array([1, 2, 0, 0, -2, 1, 0, 1, 0.5], dtype=np.float64),
                        np.array([[1.0], [2.0]]), np.array([[3.0], [-1.0]]))


def relative_error(actual, expected) -> float:
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    scale = max(np.linalg.norm(expected), 1e-300)
    return float(np.linalg.norm(actual - expected) / scale)


def random_problem(widths, M, seed, loss="squared_error", dtype=np.float64):
    """Continuous random theta and data: pre-activations hit no kink (almost surely)."""
    return verify.example_problem(gengrad.Network(widths, loss=loss), "random", M, seed, dtype)


def kink_problem(widths, M, seed, loss="squared_error", dtype=np.float64):
    """Small integer theta and data: many pre-activations are exactly 0, +-1, ... (kinks)."""
    return verify.example_problem(gengrad.Network(widths, loss=loss), "kink", M, seed, dtype)


@pytest.fixture(params=gengrad.build_info()["isas_supported"])
def isa(request):
    """Runs a test once for every kernel build this CPU supports."""
    gengrad.select_isa(request.param)
    yield request.param
    gengrad.select_isa("auto")


def rounding_scales(theta, widths, act, X, Y, loss="squared_error", sample_weight=None):
    """How large the rounding errors of a correct implementation can be, in units of the unit
    roundoff: (per-layer pre-activation error scales, risk error scale, gradient error scale).

    First-order running error analysis: each quantity carries its magnitude and its error; the
    error of a sum is the errors carried in plus the sum of the magnitudes added up, so
    cancellation (a softmax cross-entropy of 1e-9 computed as lse(z) - z_y = 18 - 18, gelu's
    1 + erf(z/sqrt 2) at z = -7) does not make a correct result look wrong, while a wrong
    convention or formula still moves results by the size of G itself.
    """
    from gengrad import reference as R
    M = np.asarray(X).shape[0]
    w = np.full(M, 1.0 / M) if sample_weight is None else np.asarray(sample_weight, np.float64)
    params = R.unflatten(theta, widths)
    zs = R.pre_activations(theta, widths, act, X)
    slopes = [np.abs(R.generalized_derivative(act, z)) for z in zs[:-1]]
    curvature = 0.0 if act.piecewise_linear else 1.0      # bounds |a''| of every smooth activation
    h = [np.abs(np.asarray(X, np.float64))]               # magnitudes of h^0, ..., h^{L-1}
    h_error = [h[0]]
    z_error = []
    for k, (W, b) in enumerate(params):
        z_error.append((h[k] + h_error[k]) @ np.abs(W).T + np.abs(b))
        if k < len(params) - 1:
            z = zs[k]
            h.append(np.abs(R.activation_value(act, z)))
            h_error.append(slopes[k] * z_error[k] + h[k + 1] + curvature * np.abs(z))
    Z, Y = zs[-1], np.asarray(Y, np.float64)
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
