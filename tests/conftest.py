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


# docs/math.md §6: widths (1,1,1), θ = (w, b, v, c) = (1, 0, -1, 1), one datum (0, 0). The limiting
# subdifferential is {(0,0,0,2), (0,-2,0,2)}: G for relu'(0) = 0 and 1; the 1/2-rule gives
# (0,-1,0,2), a Clarke but not a limiting Fréchet subgradient.
MATH6_EXAMPLE = ((1, 1, 1), np.array([1.0, 0.0, -1.0, 1.0]), np.array([[0.0]]), np.array([[0.0]]))
MATH6_LIMITS = {0.0: np.array([0.0, 0.0, 0.0, 2.0]), 1.0: np.array([0.0, -2.0, 0.0, 2.0])}

# docs/math.md §3, the cancellation example: widths (1,2,1,1), W1 = (1, 2)^T, b1 = 0, W2 = (-2, 1), b2 = 0, v = 1,
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

