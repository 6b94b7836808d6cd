"""Ready jobs for ``gengrad.sweep``: module-level functions of one config dict, so that they
pickle by reference into process pools and Dask workers. Each checks its config's keys (a typo
is a ValueError, not a silently used default) and returns only numbers and arrays."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from .network import Network

_DESCENT_DEFAULTS: dict[str, Any] = dict(
    widths=[2, 8, 1], activation="relu", convention=None, samples=32, steps=1000, lr=0.05,
    seed=0, data_seed=0, tol=1e-8, dtype="float64")

_KINK_DEFAULTS: dict[str, Any] = dict(
    widths=[2, 5, 4, 1], activation="relu", samples=8, seed=0, values=2)


def descent_job(config: Mapping[str, Any]) -> dict[str, Any]:
    """Plain gradient descent theta <- theta - lr G(theta) on data that a teacher network of
    the same architecture produces, so the infimum of the risk is 0 and "reached a global
    minimum" means the risk fell to ``tol`` or below.

    Config (defaults in ``_DESCENT_DEFAULTS``): widths, activation, convention, samples (M),
    steps (at most), lr, seed (the student's He/Glorot init), data_seed (teacher, torch-style
    init with biases, and X ~ U[-1, 1]), tol, dtype ("float32" or "float64").

    Returns initial_risk, final_risk, steps_taken, reached_global_minimum, diverged (theta
    left the finite numbers), gradient_norm (of G at the final theta) and kink_hits (exact
    kink hits of the hidden pre-activations at the final theta, all layers together).
    """
    c = _options(config, _DESCENT_DEFAULTS, "descent_job")
    net = Network(c["widths"], c["activation"], c["convention"])
    dtype = np.dtype(c["dtype"])
    teacher = net.init(c["data_seed"], np.float64, scheme="torch")
    X = np.random.default_rng(c["data_seed"]).uniform(-1, 1, (c["samples"], net.widths[0]))
    Y = net.forward(teacher, X)
    X, Y = X.astype(dtype), Y.astype(dtype)
    theta = net.init(c["seed"], dtype)
    lr, tol = dtype.type(c["lr"]), float(c["tol"])
    G = np.empty_like(theta)
    risk, _ = net.risk_and_gradient(theta, X, Y, out=G)
    initial_risk, steps, diverged = risk, 0, False
    while steps < c["steps"] and risk > tol:
        np.multiply(G, lr, out=G)
        theta -= G
        steps += 1
        if not np.isfinite(theta).all():
            diverged = True
            break
        risk, _ = net.risk_and_gradient(theta, X, Y, out=G)
    return dict(
        initial_risk=initial_risk, final_risk=np.inf if diverged else risk, steps_taken=steps,
        reached_global_minimum=not diverged and risk <= tol, diverged=diverged,
        gradient_norm=np.inf if diverged else float(np.linalg.norm(G.astype(np.float64))),
        kink_hits=-1 if diverged else int(net.kink_counts(theta, X).sum()))


def kink_job(config: Mapping[str, Any]) -> dict[str, Any]:
    """How much the choice at the kinks matters on integer-valued parameters and data (drawn
    from {-values, ..., values}), where many pre-activations lie exactly on a kink.

    Config (defaults in ``_KINK_DEFAULTS``): widths, activation (piecewise linear), samples,
    seed, values. Returns kink_hits (per hidden layer), convention_dependent (components of G
    that differ between the left and the right convention), gradient_gap (||G_left - G_right||)
    and risk.
    """
    c = _options(config, _KINK_DEFAULTS, "kink_job")
    left = Network(c["widths"], c["activation"], "left")
    right = Network(c["widths"], c["activation"], "right")
    rng = np.random.default_rng(c["seed"])
    values = c["values"]
    theta = rng.integers(-values, values + 1, left.dim).astype(np.float64)
    X = rng.integers(-values, values + 1, (c["samples"], left.widths[0])).astype(np.float64)
    Y = rng.integers(-values, values + 1, (c["samples"], left.widths[-1])).astype(np.float64)
    risk, G_left = left.risk_and_gradient(theta, X, Y)
    G_right = right.gradient(theta, X, Y)
    return dict(kink_hits=left.kink_counts(theta, X), risk=risk,
                convention_dependent=int(np.count_nonzero(G_left != G_right)),
                gradient_gap=float(np.linalg.norm(G_left - G_right)))


def _options(config: Mapping[str, Any], defaults: Mapping[str, Any], job: str) -> dict[str, Any]:
    if not isinstance(config, Mapping):
        raise TypeError(f"{job}: config must be a dict, got {type(config).__name__}")
    unknown = sorted(set(config) - set(defaults))
    if unknown:
        raise ValueError(f"{job}: unknown config keys {unknown}; expected some of {sorted(defaults)}")
    return {**defaults, **config}
