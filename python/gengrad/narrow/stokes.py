"""The Stokes multipliers of dn/dz = (A₋₁/z + A₀ + A₁z) n at ∞ (Poincaré rank 2, distinct
eigenvalues of A₁), numerically, and what they say about the Galois group.

On each of the four singular rays arg z = θ_k, where (λ₁ − λ₂)z² is real, one formal solution
(irregular.formal_solution) is recessive. The actual solution recessive there is started far out
on the ray from the optimally truncated formal series and integrated inward (where it only gains
on the other) and then along a circle to one common point. Two solutions recessive on θ_{k−1}
and θ_{k+1} are asymptotic to the same formal solution between them and differ by c_k times the
one recessive on θ_k. In the formal basis the Stokes matrices are [[1, 0], [c_k, 1]] on even
and [[1, c_k], [0, 1]] on odd rays.

Each c_k depends on how the formal basis is normalised (rescaling it multiplies the even ones by
s and the odd ones by 1/s); the products p_k = c_k c_{k+1} of neighbours do not, and the verdict
rests on them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import mpmath
import numpy as np

from .irregular import FormalSolution, coefficient_matrices, formal_invariants, formal_solution

#: Largest relative error tolerated in the optimally truncated formal series at the start radius.
SERIES_TOLERANCE = 1e-13
#: Largest |λ₁ − λ₂| R²/2: the recessive solutions then span e^{±that} (double precision's range).
MAX_DOMINANCE = 300.0
#: Largest phase |λ|R²/2 + |μ|R the solutions may turn through along a ray (DOP853's steps).
MAX_PHASE = 2e4
#: Largest residual of the trace identity (monodromy_identity) a verdict may rest on.
IDENTITY_TOLERANCE = 1e-8
#: Largest bound of a multiplier (basis of unit eigenvectors of A₁) that "abelian" may call zero.
ZERO_BOUND = 1e-8


@dataclass
class StokesData:
    """The multipliers c_k on the rays θ_k = θ_0 + kπ/2 (θ_0 ∈ [−π/2, π/2), where
    (λ₁ − λ₂)z² > 0) and the products p_k = c_k c_{k+1} (c_4 = c_0), each with a bound: its
    difference from a second computation (start radius × 1.2, tolerance × 10) plus 1e-12 × (1 +
    its size): the products enter the trace identity beside terms of order 1, so 1e-12 is
    their resolution. ``radius``: where the recessive solutions start; ``series_error``: the truncated formal
    series' relative error there; ``identity``: monodromy_identity's residual."""

    rays: tuple[float, ...]
    multipliers: tuple[complex, ...]
    bounds: tuple[float, ...]
    products: tuple[complex, ...]
    product_bounds: tuple[float, ...]
    radius: float
    terms: int
    series_error: float
    identity: float


def _transport(coefficients: list[np.ndarray], ray: float, start: float, radius: float, angle: float,
               vector: np.ndarray, rtol: float) -> np.ndarray:
    """Continue a solution from z = start e^{i ray} inward along the ray to |z| = radius, then
    along that circle to the argument `angle` (on the universal cover: the arc may exceed 2π)."""
    from scipy.integrate import solve_ivp

    A_residue, A0, A1 = coefficients
    direction = np.exp(1j * ray)

    def field(z: complex) -> np.ndarray:
        return np.asarray(A_residue / z + A0 + A1 * z, dtype=complex)

    def radial(s: float, y: np.ndarray) -> np.ndarray:
        return np.asarray(field(s * direction) @ y * direction, dtype=complex)

    def arc(a: float, y: np.ndarray) -> np.ndarray:
        z = radius * np.exp(1j * a)
        return np.asarray(field(z) @ y * (1j * z), dtype=complex)

    with np.errstate(all="ignore"):  # an overflow shows as a failure or a non-finite end, checked below
        path = solve_ivp(radial, (start, radius), vector, method="DOP853", rtol=rtol, atol=1e-300)
        if not path.success or not np.isfinite(path.y[:, -1]).all():
            raise ArithmeticError(f"the integration along the ray arg z = {ray:.4f} failed: {path.message}")
        if angle != ray:
            path = solve_ivp(arc, (ray, angle), path.y[:, -1], method="DOP853", rtol=rtol, atol=1e-300)
            if not path.success or not np.isfinite(path.y[:, -1]).all():
                raise ArithmeticError(f"the integration along |z| = {radius:.3g} failed: {path.message}")
    return np.asarray(path.y[:, -1], dtype=complex)


def _start_radius(formal: Sequence[FormalSolution], gap: float, dominance: float) -> tuple[float, float]:
    """The smallest radius from |λ₁ − λ₂|R²/2 = dominance up, by factors of 1.25, at which both
    optimally truncated formal series are accurate to SERIES_TOLERANCE (large exponents ρ and
    coefficients μ need more room than the exponentials alone)."""
    radius = float(np.sqrt(2 * dominance / gap))
    while True:
        phase = max(abs(complex(f.leading)) * radius ** 2 / 2 + abs(complex(f.linear)) * radius for f in formal)
        if phase > MAX_PHASE:
            raise ArithmeticError(f"the solutions turn {phase:.1e} radians along the rays from |z| = {radius:.3g} "
                                  f"(λ₁ − λ₂ = {gap:.1e} is small beside λ): too many to integrate accurately")
        error = max(f.series_at(complex(radius))[1] for f in formal)
        if error <= SERIES_TOLERANCE:
            return radius, error
        radius *= 1.25
        if gap * radius * radius / 2 > MAX_DOMINANCE:
            raise ArithmeticError(f"the formal series cannot be summed to {SERIES_TOLERANCE:g} before the "
                                  f"exponentials leave double precision's range (error {error:.1e})")


def _multipliers(coefficients: list[mpmath.matrix], formal: Sequence[FormalSolution], radius: float,
                 rtol: float) -> tuple[tuple[float, ...], tuple[complex, ...]]:
    difference = complex(formal[0].leading - formal[1].leading)
    theta0 = -np.angle(difference) / 2
    numeric = [np.array(A.tolist(), dtype=complex) for A in coefficients]
    meeting_radius, meeting = min(1.0, radius / 4), theta0 + 0.75 * np.pi
    solutions = {}
    for k in range(-1, 5):
        angle = theta0 + k * np.pi / 2
        kind = 1 if k % 2 == 0 else 0        # on even rays the second formal solution is recessive
        log_start = np.log(radius) + 1j * angle
        series, _ = formal[kind].series_at(radius * np.exp(1j * angle))
        size = np.linalg.norm(series)
        value = _transport(numeric, angle, radius, meeting_radius, meeting, series / size, rtol)
        solutions[k] = (value, formal[kind].log_factor(log_start) + np.log(size))
    multipliers = []
    for k in range(4):
        (before, _), (at, log_at), (after, log_after) = solutions[k - 1], solutions[k], solutions[k + 1]
        # r_{k+1} = r_{k-1} + c_k r_k; the scale of r_{k-1} cancels
        ratio = np.linalg.det(np.column_stack([before, after])) / np.linalg.det(np.column_stack([before, at]))
        multipliers.append(complex(ratio * np.exp(log_after - log_at)))
    return tuple(float(theta0 + k * np.pi / 2) for k in range(4)), tuple(multipliers)


def stokes_data(coefficients: Sequence[object], dominance: float = 40.0, terms: int = 60,
                rtol: float = 1e-12) -> StokesData:
    """The four Stokes multipliers at ∞ and their neighbour products, with bounds (StokesData).
    ``dominance``: abs(λ₁ − λ₂) R²/2 at the first start radius tried; ``terms``: of the formal
    series; ``rtol``: DOP853's tolerance. Raises ArithmeticError when it cannot reach the
    accuracy it needs (the verdict is then "undecided")."""
    matrices = coefficient_matrices(coefficients)
    if isinstance(dominance, bool) or not isinstance(dominance, (int, float)) or not 0 < dominance <= MAX_DOMINANCE:
        raise ValueError(f"dominance must be a number in (0, {MAX_DOMINANCE:g}], got {dominance!r}")
    if isinstance(terms, bool) or not isinstance(terms, int) or terms < 4:
        raise ValueError(f"terms must be an integer >= 4, got {terms!r}")
    if isinstance(rtol, bool) or not isinstance(rtol, float) or not 1e-14 <= rtol <= 1e-6:
        raise ValueError(f"rtol must be a float in [1e-14, 1e-6], got {rtol!r}")
    invariants = formal_invariants(matrices)
    if invariants.rank != 2:
        raise ValueError("Stokes data are computed for Poincaré rank 2 at ∞ only")
    formal = [formal_solution(matrices, j, terms) for j in range(2)]
    gap = abs(complex(invariants.leading[0] - invariants.leading[1]))
    radius, series_error = _start_radius(formal, gap, dominance)
    rays, multipliers = _multipliers(matrices, formal, radius, rtol)
    check = _multipliers(matrices, formal, 1.2 * radius, 10 * rtol)[1]
    products = tuple(multipliers[k] * multipliers[(k + 1) % 4] for k in range(4))
    check_products = tuple(check[k] * check[(k + 1) % 4] for k in range(4))

    def bounds(values: Sequence[complex], others: Sequence[complex]) -> tuple[float, ...]:
        return tuple(abs(a - b) + 1e-12 * (1 + abs(a)) for a, b in zip(values, others))

    data = StokesData(rays, multipliers, bounds(multipliers, check), products, bounds(products, check_products),
                      radius, terms, series_error, 0.0)
    data.identity = monodromy_identity(matrices, data)
    return data


def stokes_verdict(stokes: StokesData, nonzero_margin: float = 1e3, zero_margin: float = 10.0) -> str:
    """What the Stokes data say about the Galois group G (here the local group at ∞: the only
    other singular point, z = 0, is regular, and its monodromy is the inverse of ∞'s).

    "not solvable": a neighbour product p_k exceeds nonzero_margin bounds, so the multipliers on
    an even and an odd ray are both nonzero and G holds a lower and an upper unipotent group,
    hence SL2. "reducible": every p_k is within zero_margin bounds of 0 (the multipliers of one
    parity vanish: G is triangular); "abelian" if moreover every c_k is, with a bound below
    ZERO_BOUND (in the basis of unit eigenvectors of A₁). "undecided" otherwise, and whenever
    the trace identity misses by more than IDENTITY_TOLERANCE."""
    if not nonzero_margin > zero_margin > 0:
        raise ValueError(f"need nonzero_margin > zero_margin > 0, got {nonzero_margin} and {zero_margin}")
    if not stokes.identity <= IDENTITY_TOLERANCE:
        return "undecided"
    if any(abs(p) > nonzero_margin * b for p, b in zip(stokes.products, stokes.product_bounds)):
        return "not solvable"
    if not all(abs(p) < zero_margin * b for p, b in zip(stokes.products, stokes.product_bounds)):
        return "undecided"
    # One parity vanishes. "abelian" needs the other to vanish too, with bounds small enough to
    # mean it (the surviving parity can be huge and computed with no accuracy at all).
    if all(abs(c) < zero_margin * b and b <= ZERO_BOUND for c, b in zip(stokes.multipliers, stokes.bounds)):
        return "abelian"
    return "reducible"


def monodromy_identity(coefficients: Sequence[object], stokes: StokesData) -> float:
    """|tr(e^{2πiR} S₃S₂S₁S₀) − tr M₀|: the loop around ∞ read in the formal basis (formal
    monodromy times the Stokes matrices in the order of the rays) against the loop around the
    regular singular point 0, whose trace is e^{2πiσ₁} + e^{2πiσ₂} (σ the eigenvalues of A₋₁,
    non-resonant). A check on the multipliers' values, though not on how the formal basis is
    normalised (the identity is blind to c_even·s, c_odd/s)."""
    matrices = coefficient_matrices(coefficients)
    exponents = [complex(x) for x in formal_invariants(matrices).exponents]
    residue = [complex(x) for x in mpmath.eig(matrices[0])[0]]
    product = np.diag([np.exp(2j * np.pi * x) for x in exponents])
    for k in (3, 2, 1, 0):
        c = stokes.multipliers[k]
        product = product @ (np.array([[1, 0], [c, 1]]) if k % 2 == 0 else np.array([[1, c], [0, 1]]))
    return float(abs(np.trace(product) - sum(np.exp(2j * np.pi * x) for x in residue)))
