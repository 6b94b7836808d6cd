"""The relaxation constructions against gengrad: its generalized gradient G on the curve, finite
differences of G against the normal variational equation, and an integration of the flow."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .relaxation import Relaxation


def _gengrad(r: Relaxation):  # type: ignore[no-untyped-def]
    """The network, its data and a function θ (four parameters) -> G at those parameters
    (the other entries of gengrad's flat vector, the width2 model's biases, held at 0)."""
    from .. import Network

    net = Network(r.widths, activation=r.activation)
    X = np.array(r.inputs, dtype=np.float64).reshape(-1, 1)
    Y = np.array(r.targets, dtype=np.float64).reshape(-1, 1)
    weight = np.full(len(r.inputs), 0.5)          # Σ ½ (f − y)², the construction's L
    indices = list(r.gengrad_indices)

    def gradient(theta: np.ndarray) -> np.ndarray:
        full = np.zeros(net.dim)
        full[indices] = theta
        return np.asarray(net.gradient(full, X, Y, sample_weight=weight))[indices]

    return gradient


@dataclass
class RelaxationCheck:
    """Largest relative differences over the points z of Γ checked: gengrad's −G against the
    curve's velocity −κ z dθ/dz (``field``), central differences of −G in the normal
    coordinates (fourth order) against the NVE's matrix (``normal_jacobian``), and an integration of the
    four-parameter flow (DOP853, rtol 1e-12) against θ(e^{−κt}) up to t_end (``flow``)."""

    field: float
    normal_jacobian: float
    flow: float
    t_end: float


def check_relaxation(r: Relaxation, points: tuple[float, ...] = (1.0, 0.6, 0.2), step: float = 1e-4,
                     t_end: float = 2.0) -> RelaxationCheck:
    from scipy.integrate import solve_ivp

    if not (isinstance(step, float) and 0 < step < 1e-1):
        raise ValueError(f"step must be a float in (0, 0.1), got {step!r}")
    if not (isinstance(t_end, (int, float)) and 0 < t_end <= 100):
        raise ValueError(f"t_end must be a number in (0, 100], got {t_end!r}")
    gradient = _gengrad(r)
    kappa = float(r.numeric(r.kappa))
    velocity = [np.array([float(r.numeric(r.curve[p].diff("z")).subs("z", z)) for p in r.params]) for z in points]
    field = jacobian = 0.0
    for z, dtheta in zip(points, velocity):
        theta = r.numeric_curve(z)
        expected = -kappa * z * dtheta
        field = max(field, float(np.linalg.norm(-gradient(theta) - expected) / np.linalg.norm(expected)))
        J = r.numeric_jacobian(z)
        estimate = np.empty((2, 2))
        for j in range(2):
            # fourth-order central differences (step² error eliminated)
            e = np.zeros(4)
            e[j] = step
            G = [gradient(theta + k * e)[:2] for k in (-2, -1, 1, 2)]
            estimate[:, j] = -(G[0] - 8 * G[1] + 8 * G[2] - G[3]) / (12 * step)
        jacobian = max(jacobian, float(np.abs(estimate - J).max() / np.abs(J).max()))
    solution = solve_ivp(lambda t, th: -gradient(th), (0.0, t_end), r.numeric_curve(1.0), method="DOP853",
                         rtol=1e-12, atol=1e-14, dense_output=True)
    if not solution.success:
        raise RuntimeError(f"DOP853 failed: {solution.message}")
    flow = max(float(np.abs(solution.sol(t) - r.numeric_curve(float(np.exp(-kappa * t)))).max())
               for t in np.linspace(0.0, t_end, 21))
    return RelaxationCheck(field, jacobian, flow, t_end)
