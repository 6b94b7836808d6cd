"""Steps 1 and 3, numerically: the vector field against gengrad's generalized gradient, and the
particular solution against an accurate integration of the whole flow."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Optional

import numpy as np
import sympy as sp
from numpy.typing import ArrayLike

if TYPE_CHECKING:
    from ..network import Network

from .derivation import Derivation, Model, S, V, W, plane_coordinates

# --- 1 and 3, numerically: gengrad's gradient and the flow itself -------------------------------

def _gengrad_setup(m: Model) -> tuple[Network, np.ndarray, np.ndarray, np.ndarray]:
    from .. import Network

    net = Network(m.widths, activation=m.activation)
    xs, ys = m.data
    X = np.array(xs, dtype=np.float64).reshape(-1, 1)
    Y = np.array([float(y) for y in ys]).reshape(-1, 1)
    return net, X, Y, np.array(m.sample_weight)


def check_against_gengrad(derivation: Derivation, thetas: Optional[ArrayLike] = None, seed: int = 0,
                          count: int = 16) -> float:
    """Largest relative difference ||F(θ) + G(θ)|| / ||F(θ)|| between the symbolic vector field
    and gengrad's generalized gradient G (float64, compiled core), over ``thetas`` (rows of
    four parameters) or ``count`` random ones. Parameters outside θ (the bias_free model's
    biases) are held at 0 in gengrad's flat vector."""
    m = derivation.model
    field_np = sp.lambdify(m.params, derivation.vector_field, "numpy")
    rows = np.atleast_2d(np.asarray(np.random.default_rng(seed).normal(size=(count, 4)) if thetas is None else thetas,
                                    dtype=np.float64))
    if rows.ndim != 2 or rows.shape[1] != 4:
        raise ValueError(f"thetas must have shape (n, 4), got {rows.shape}")
    net, X, Y, weight = _gengrad_setup(m)
    worst = 0.0
    for theta in rows:
        full = np.zeros(net.dim)
        full[list(m.gengrad_indices)] = theta
        G = net.gradient(full, X, Y, sample_weight=weight)[list(m.gengrad_indices)]
        F = np.array(field_np(*theta), dtype=np.float64)
        worst = max(worst, float(np.linalg.norm(F + G) / np.linalg.norm(F)))
    return worst


@dataclass
class FlowCheck:
    """The full four-parameter flow integrated from a point of Γ, compared with Γ."""

    theta0: np.ndarray
    t_end: float
    evaluations: int
    off_curve: float       # max |θ(t) − θ(s(t))|, s(t) read off θ(t)'s w
    time_law: float        # max |w(t) − w(T⁻¹(T(s(0)) + t))|
    first_integral: float  # max |J(θ(t))|
    loss_start: float
    loss_end: float


def check_flow(derivation: Derivation, t_end: float = 2.0, samples: int = 41,
               rtol: float = 1e-12) -> FlowCheck:
    """Integrate θ' = F(θ) with DOP853 from the point of Γ halfway (in w) between the origin and
    the zero-loss equilibrium Γ runs into, and measure how far θ(t) strays from Γ and from the
    time law. The time law is compared in w, w(T⁻¹(T(s₀) + t)), not in t: near the equilibrium
    T has a logarithmic singularity, so T(s(t)) would turn rounding in s into errors in t."""
    from scipy.integrate import solve_ivp
    from scipy.optimize import brentq

    if isinstance(t_end, bool) or not (isinstance(t_end, (int, float)) and 0 < t_end < 1e3):
        raise ValueError(f"t_end must be a positive number below 1000, got {t_end!r}")
    m = derivation.model
    field_np = sp.lambdify(m.params, derivation.vector_field, "numpy")
    theta_np = sp.lambdify(S, derivation.theta_of_s, "numpy")
    T_np = sp.lambdify(S, derivation.time_law, "numpy")
    risk_np = sp.lambdify(m.params, derivation.risk, "numpy")
    w_of_s = sp.lambdify(S, derivation.w_of_s, "numpy")
    s_of_w: Callable[[float], float] = (lambda w: float(np.exp(w))) if m.activation == "tanh" else (lambda w: w)
    origin = 1.0 if m.activation == "tanh" else 0.0
    numerator = sp.Poly(sp.numer(sp.cancel(derivation.speed)), S)
    s_star = min(complex(r).real for r in numerator.nroots(n=30)
                 if abs(complex(r).imag) < 1e-20 and complex(r).real > origin + 1e-12)
    s0 = s_of_w(float(w_of_s(s_star)) / 2)
    theta0 = np.array(theta_np(s0), dtype=np.float64)
    solution = solve_ivp(lambda t, th: np.array(field_np(*th), dtype=np.float64), (0.0, t_end),
                         theta0, method="DOP853", rtol=rtol, atol=rtol * 1e-2, dense_output=True)
    if not solution.success:
        raise RuntimeError(f"DOP853 failed: {solution.message}")
    T0 = complex(T_np(complex(s0)))

    def elapsed(s: float) -> float:         # T is real up to a constant imaginary part (logarithms of negatives)
        return (complex(T_np(complex(s))) - T0).real

    def s_at(t: float) -> float:
        closest = s_star * (1 - 8 * np.finfo(float).eps)
        return s_star if elapsed(closest) < t else brentq(lambda s: elapsed(s) - t, s0, closest, xtol=1e-15)

    to_plane = np.array(plane_coordinates(m)[:2, :], dtype=np.float64)
    first_integral = sp.lambdify((W, V), derivation.first_integral, "numpy")
    off = law = first = 0.0
    for t in np.linspace(0.0, t_end, samples):
        theta = solution.sol(t)
        w, v = to_plane @ theta
        off = max(off, float(np.abs(theta - np.array(theta_np(s_of_w(w)), dtype=np.float64)).max()))
        law = max(law, abs(float(w - w_of_s(s_at(t)))))
        first = max(first, abs(float(first_integral(w, v))))
    return FlowCheck(theta0, t_end, int(solution.nfev), off, law, first,
                     float(risk_np(*theta0)), float(risk_np(*solution.sol(t_end))))
