import numpy as np
import pytest

import gengrad
from gengrad import activations

# (activation, convention): every named activation, each kinked one with a non-default side too.
ACTIVATIONS = [
    ("relu", None), ("relu", 1.0),
    (activations.leaky_relu(0.25), None), (activations.leaky_relu(0.25), "right"),
    ("hardtanh", None), ("hardtanh", (1.0, 1.0)), (activations.clip(-0.5, 2.0), "left"),
    ("relu6", None), ("abs", None), ("abs", -1.0), ("identity", None),
    ("tanh", None), ("sigmoid", None), ("softplus", None), ("gelu", None), ("silu", None),
]
ACTIVATION_IDS = [f"{a if isinstance(a, str) else a.name + str(a.params)}-{c}" for a, c in ACTIVATIONS]


def relative_error(actual, expected) -> float:
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    scale = max(np.linalg.norm(expected), 1e-300)
    return float(np.linalg.norm(actual - expected) / scale)


def random_problem(widths, M, seed, loss="squared_error", dtype=np.float64):
    """Continuous random theta and data: pre-activations hit no kink (almost surely)."""
    rng = np.random.default_rng(seed)
    net = gengrad.Network(widths)
    theta = rng.normal(size=net.dim) * 0.7
    X = rng.normal(size=(M, widths[0]))
    Y = _targets(rng, M, widths[-1], loss)
    return theta.astype(dtype), X.astype(dtype), Y.astype(dtype)


def kink_problem(widths, M, seed, loss="squared_error", dtype=np.float64):
    """Small integer theta and data: many pre-activations are exactly 0, +-1, ... (kinks)."""
    rng = np.random.default_rng(seed)
    net = gengrad.Network(widths)
    theta = rng.integers(-2, 3, size=net.dim).astype(np.float64)
    X = rng.integers(-2, 3, size=(M, widths[0])).astype(np.float64)
    Y = _targets(rng, M, widths[-1], loss)
    return theta.astype(dtype), X.astype(dtype), np.round(Y).astype(dtype)


def _targets(rng, M, width, loss):
    if loss == "cross_entropy":
        return np.eye(width)[rng.integers(0, width, size=M)]
    return rng.normal(size=(M, width))


@pytest.fixture(params=gengrad.build_info()["isas_supported"])
def isa(request):
    """Runs a test once for every kernel build this CPU supports."""
    gengrad.select_isa(request.param)
    yield request.param
    gengrad.select_isa("auto")
