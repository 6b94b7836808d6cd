"""Step 5: monodromy of the normal variational equation by Taylor-series analytic continuation,
in complex double precision and in fixed-point arithmetic."""
from __future__ import annotations

import operator
import time
from dataclasses import dataclass
from fractions import Fraction
from numbers import Integral
from typing import Generic, Iterator, Optional, Protocol, Sequence, TypeVar, Union

import mpmath
import numpy as np
import sympy as sp

from .derivation import DIGITS, Derivation, S, SingularPoint, as_fraction

#: A complex number in fixed point: (re, im) scaled by 2^bits (_FixedSeries).
_Fixed = tuple[int, int]
_FixedMatrix = list[list[_Fixed]]

# --- 5: monodromy by Taylor-series analytic continuation -----------------------------------------
#
# dY/ds = A(s) Y with A = P/d rational: at a centre z0 write d(z0 + u) = Σ d_j u^j and
# P(z0 + u) = Σ P_j u^j; the Taylor coefficients of Y(z0 + u) = Σ Y_k u^k then obey
#     (k + 1) d_0 Y_{k+1} = Σ_j P_j Y_{k-j} − Σ_{j≥1} (k + 1 − j) d_j Y_{k+1-j},
# and the series converges for |u| below the distance R to the nearest singular point. A step
# of length ≤ ratio·R (ratio ≤ 1/2) makes the terms decay at least like ratio^k, so the order
# of the method is whatever the tolerance asks for (about 50 terms in double precision, 110 at
# 30 digits). Both number systems below run this recurrence on the scaled coefficients
# D_j = d_j h^j, Q_j = P_j h^(j+1), whose terms Z_k = Y_k h^k sum to Y(z0 + h).

_MAX_TERMS = 600

#: Fundamental matrices as a number system holds them.
_Y = TypeVar("_Y")


class _Series(Protocol, Generic[_Y]):
    """What _transport needs of a number system."""

    name: str

    def identity(self) -> _Y: ...

    def step(self, Y: _Y, z0: complex, z1: complex) -> tuple[_Y, int]: ...

    def matrix(self, Y: _Y) -> mpmath.matrix: ...


class _DoubleSeries:
    """The recurrence in complex double precision (NumPy)."""

    name = "complex double precision"

    def __init__(self, denominator: Sequence[Fraction], numerator: Sequence[Sequence[Sequence[Fraction]]]):
        self.d = np.array([float(c) for c in denominator], dtype=complex)
        self.P = np.array([[[float(c) for c in numerator[i][j]] for j in range(2)]
                           for i in range(2)], dtype=complex).transpose(2, 0, 1)
        self.tolerance = 2.0 ** -54

    def identity(self) -> np.ndarray:
        return np.eye(2, dtype=complex)

    def step(self, Y: np.ndarray, z0: complex, z1: complex) -> tuple[np.ndarray, int]:
        h = z1 - z0
        d, P = _taylor_shift_np(self.d, z0), _taylor_shift_np(self.P, z0)
        powers = h ** np.arange(max(len(d), len(P)) + 1)
        D = d * powers[:len(d)]
        Q = P * powers[1:len(P) + 1][:, None, None]
        jD = D[1:] * np.arange(1, len(D))
        Z = np.empty((_MAX_TERMS + 1, 2, 2), dtype=complex)
        Z[0] = Y
        total = Y.copy()
        inverse = 1.0 / D[0]
        small = 0
        for k in range(_MAX_TERMS):
            newest_first = Z[k::-1]
            acc = np.einsum("jab,jbc->ac", Q[:k + 1], newest_first[:len(Q)])
            n = min(k + 1, len(D) - 1)
            if n:
                acc -= (k + 1) * np.einsum("j,jac->ac", D[1:n + 1], newest_first[:n]) \
                    - np.einsum("j,jac->ac", jD[:n], newest_first[:n])
            Z[k + 1] = acc * (inverse / (k + 1))
            total += Z[k + 1]
            small = small + 1 if np.abs(Z[k + 1]).max() <= self.tolerance * np.abs(total).max() else 0
            if small == 3:
                return total, k + 2
        raise RuntimeError("Taylor series did not converge; step too long for its singular points")

    def matrix(self, Y: np.ndarray) -> mpmath.matrix:
        return mpmath.matrix([[mpmath.mpc(complex(Y[i, j])) for j in range(2)] for i in range(2)])


def _taylor_shift_np(coeffs: np.ndarray, z0: complex) -> np.ndarray:
    """Coefficients (ascending, along axis 0) of p(z0 + u) in u, by repeated synthetic division."""
    c = coeffs.astype(complex).copy()
    n = len(c)
    for i in range(n - 1):
        for k in range(n - 2, i - 1, -1):
            c[k] = c[k] + z0 * c[k + 1]
    return c


class _FixedSeries:
    """The recurrence in fixed-point complex arithmetic on Python integers: a number is a pair
    (re, im) of integers scaled by 2^bits. The same recurrence in mpmath's mpc costs about 6 µs
    an operation, twenty times more; the integers' sums of products are exact and rounded once."""

    def __init__(self, denominator: Sequence[Fraction], numerator: Sequence[Sequence[Sequence[Fraction]]],
                 digits: int):
        self.name = f"{digits}-digit fixed point"
        self.bits = int(digits * 3.33) + 40
        self.tolerance_bits = int(digits * 3.33) + 7
        self.d = [self._rational(c) for c in denominator]
        self.P = [[[self._rational(c) for c in numerator[i][j]] for j in range(2)] for i in range(2)]

    def _rational(self, q: Fraction) -> _Fixed:
        return ((q.numerator << self.bits) // q.denominator, 0)

    def _float(self, z: complex) -> _Fixed:
        (p, q), (r, t) = float(z.real).as_integer_ratio(), float(z.imag).as_integer_ratio()
        return ((p << self.bits) // q, (r << self.bits) // t)

    def _mul(self, a: _Fixed, b: _Fixed) -> _Fixed:
        B = self.bits
        return ((a[0] * b[0] - a[1] * b[1]) >> B, (a[0] * b[1] + a[1] * b[0]) >> B)

    def _shift(self, coeffs: Sequence[_Fixed], z0: _Fixed) -> list[_Fixed]:
        c = list(coeffs)
        for i in range(len(c) - 1):
            for k in range(len(c) - 2, i - 1, -1):
                t = self._mul(z0, c[k + 1])
                c[k] = (c[k][0] + t[0], c[k][1] + t[1])
        return c

    def identity(self) -> _FixedMatrix:
        one = (1 << self.bits, 0)
        return [[one, (0, 0)], [(0, 0), one]]

    def step(self, Y: _FixedMatrix, z0: complex, z1: complex) -> tuple[_FixedMatrix, int]:
        B, mul = self.bits, self._mul
        a, b = self._float(z0), self._float(z1)
        h = (b[0] - a[0], b[1] - a[1])
        d = self._shift(self.d, a)
        P = [[self._shift(self.P[i][j], a) for j in range(2)] for i in range(2)]
        power = (1 << B, 0)
        D: list[_Fixed] = []
        for coefficient in d:
            D.append(mul(coefficient, power))
            power = mul(power, h)
        Q: list[list[list[_Fixed]]] = [[[(0, 0)] * len(P[0][0]) for _ in range(2)] for _ in range(2)]
        power = h
        for j in range(len(P[0][0])):
            for r in range(2):
                for m in range(2):
                    Q[r][m][j] = mul(P[r][m][j], power)
            power = mul(power, h)
        Dre, Dim = [x[0] for x in D[1:]], [x[1] for x in D[1:]]
        jDre, jDim = [j * x for j, x in enumerate(Dre, 1)], [j * x for j, x in enumerate(Dim, 1)]
        Qre = [[[x[0] for x in Q[r][m]] for m in range(2)] for r in range(2)]
        Qim = [[[x[1] for x in Q[r][m]] for m in range(2)] for r in range(2)]
        norm = D[0][0] ** 2 + D[0][1] ** 2
        inverse = ((D[0][0] << 2 * B) // norm, (-D[0][1] << 2 * B) // norm)
        # histories, newest first: H[m][c] = (re list, im list) of Z_k[m][c], Z_{k-1}[m][c], ...
        H = [[([Y[m][c][0]], [Y[m][c][1]]) for c in range(2)] for m in range(2)]
        total = [[list(Y[m][c]) for c in range(2)] for m in range(2)]
        small = 0
        for k in range(_MAX_TERMS):
            new: _FixedMatrix = [[(0, 0), (0, 0)], [(0, 0), (0, 0)]]
            for r in range(2):
                for c in range(2):
                    re = im = 0
                    for m in range(2):
                        hre, him = H[m][c]
                        re += _dot(Qre[r][m], hre) - _dot(Qim[r][m], him)
                        im += _dot(Qre[r][m], him) + _dot(Qim[r][m], hre)
                    hre, him = H[r][c]
                    re -= (k + 1) * (_dot(Dre, hre) - _dot(Dim, him)) - (_dot(jDre, hre) - _dot(jDim, him))
                    im -= (k + 1) * (_dot(Dre, him) + _dot(Dim, hre)) - (_dot(jDre, him) + _dot(jDim, hre))
                    z = mul((re >> B, im >> B), inverse)
                    new[r][c] = (z[0] // (k + 1), z[1] // (k + 1))
            largest = 0
            for r in range(2):
                for c in range(2):
                    H[r][c][0].insert(0, new[r][c][0])
                    H[r][c][1].insert(0, new[r][c][1])
                    total[r][c][0] += new[r][c][0]
                    total[r][c][1] += new[r][c][1]
                    largest = max(largest, abs(new[r][c][0]), abs(new[r][c][1]))
            scale = max(abs(x) for row in total for entry in row for x in entry)
            small = small + 1 if largest <= scale >> self.tolerance_bits else 0
            if small == 3:
                return [[(total[r][c][0], total[r][c][1]) for c in range(2)] for r in range(2)], k + 2
        raise RuntimeError("Taylor series did not converge; step too long for its singular points")

    def matrix(self, Y: _FixedMatrix) -> mpmath.matrix:
        with mpmath.workprec(self.bits + 64):
            return mpmath.matrix([[mpmath.mpc(mpmath.ldexp(Y[i][j][0], -self.bits),
                                              mpmath.ldexp(Y[i][j][1], -self.bits))
                                   for j in range(2)] for i in range(2)])


def _dot(a: Sequence[int], b: Sequence[int]) -> int:
    return sum(map(operator.mul, a, b))


def steps_along(nodes: Sequence[complex], singular: Sequence[complex], ratio: float
                ) -> Iterator[tuple[complex, complex]]:
    """The steps (z, z') of the polyline ``nodes`` (complex floats), each at most ``ratio`` times
    the distance from z to the nearest singular point; the last one of a segment ends exactly
    at its node. Every continuation of the NVE (floats, fixed point, balls) follows these."""
    for a, b in zip(nodes, nodes[1:]):
        z = a
        while z != b:
            reach = ratio * min(abs(z - p) for p in singular)
            nxt = b if abs(b - z) <= reach else z + (b - z) * (reach / abs(b - z))
            yield z, nxt
            z = nxt


def _transport(series: _Series[_Y], nodes: Sequence[complex], singular: Sequence[complex], ratio: float
               ) -> tuple[_Y, int, int]:
    """The fundamental matrix at the end of the polyline ``nodes``, equal to the identity at its
    start (steps_along). Returns (Y, steps, terms)."""
    Y, steps, terms = series.identity(), 0, 0
    for z, nxt in steps_along(nodes, singular, ratio):
        Y, k = series.step(Y, z, nxt)
        steps, terms = steps + 1, terms + k
    return Y, steps, terms


@dataclass
class Loop:
    """A loop from the base point around one finite singular point: the ray to a regular polygon
    around it, the polygon counterclockwise, the ray back. ``matrix`` is the monodromy from the
    finer integration (M with n(end) = M n(start)), ``coarse`` from the coarser one."""

    point: SingularPoint
    radius: float
    matrix: mpmath.matrix
    coarse: mpmath.matrix
    steps: int
    terms: int


@dataclass
class Monodromy:
    """Monodromy matrices of the NVE at one base point, from two independent integrations."""

    derivation: Derivation
    base: complex
    loops: list[Loop]            # counterclockwise order as seen from the base point
    around_all: mpmath.matrix    # the loop around every finite singular point (fine)
    around_all_coarse: mpmath.matrix
    fine: str                    # the number systems of the two integrations
    coarse: str
    checks: dict[str, mpmath.mpf]  # name -> largest residual of the fine integration
    seconds: float

    def generators(self, coarse: bool = False) -> list[mpmath.matrix]:
        """The monodromies of the loops that lie on the particular solution's Riemann surface."""
        return [loop.coarse if coarse else loop.matrix for loop in self.loops if loop.point.on_curve]


def _base_point(points: Sequence[SingularPoint]) -> complex:
    """A base point from which every straight ray to a singular point keeps as far as possible
    from the others (a ray through another singular point would be no loop generator)."""
    p = np.array([q.location for q in points])
    span = max(np.ptp(p.real), np.ptp(p.imag), 1.0)
    grid = np.linspace(-0.75, 0.75, 25) * span
    c = (p.mean() + grid[:, None] + 1j * grid[None, :]).ravel()
    ray = p[None, :] - c[:, None]                               # (candidate, j)
    rel = p[None, None, :] - c[:, None, None]                   # (candidate, ·, k)
    length2 = np.maximum(np.abs(ray[:, :, None]) ** 2, 1e-300)
    t = np.clip((rel * ray[:, :, None].conj()).real / length2, 0, 1)
    gap = np.abs(rel - t * ray[:, :, None])
    n = len(p)
    gap[:, np.arange(n), np.arange(n)] = np.inf
    clearance = np.minimum(gap.min(axis=(1, 2)) if n > 1 else np.inf, np.abs(ray).min(axis=1))
    best = c[int(np.argmax(clearance))]
    return complex(round(best.real * 64) / 64, round(best.imag * 64) / 64)


def _coefficients(derivation: Derivation) -> tuple[list[Fraction], list[list[list[Fraction]]]]:
    """d(s) and P(s) = d(s) A(s) as ascending lists of Fractions (P padded to one length)."""
    d = [as_fraction(c) for c in reversed(derivation.denominator.all_coeffs())]
    polys = [[sp.Poly(derivation.numerator[i, j], S) for j in range(2)] for i in range(2)]
    n = max(p.degree() for row in polys for p in row) + 1
    P = [[[as_fraction(c) for c in reversed(p.all_coeffs())] for p in row] for row in polys]
    P = [[entry + [Fraction(0)] * (n - len(entry)) for entry in row] for row in P]
    return d, P


@dataclass
class Lasso:
    """A loop from the base point: the ray to the first corner of a regular polygon around
    ``point`` (radius ``radius``), the polygon counterclockwise; the loop is ray, polygon, ray
    back. For the loop around all finite singular points ``point`` is None."""

    point: Optional[SingularPoint]
    radius: float
    ray: list[complex]
    polygon: list[complex]


@dataclass
class LassoPaths:
    base: complex
    lassos: list[Lasso]   # counterclockwise order of their rays, from the widest gap between them
    around_all: Lasso


def lasso_paths(derivation: Derivation, corners: int = 8) -> LassoPaths:
    """The loops whose monodromies monodromy() computes (and certify.certify encloses): from one
    base point, around each finite singular point (polygons of radius 0.4 times the distance to
    the nearest other singular point or the base point), and around all of them."""
    points = derivation.singular_points
    where = [p.location for p in points]
    base = _base_point(points)
    # The loop around everything leaves the base point through the widest gap between the rays.
    angles = np.sort(np.angle(np.array(where) - base))
    gaps = np.diff(np.concatenate([angles, [angles[0] + 2 * np.pi]]))
    out = angles[int(np.argmax(gaps))] + gaps.max() / 2
    order = sorted(range(len(points)), key=lambda j: (np.angle(where[j] - base) - out) % (2 * np.pi))
    lassos = []
    for j in order:
        centre = where[j]
        others = [abs(centre - q) for k, q in enumerate(where) if k != j]
        radius = 0.4 * min(others + [abs(centre - base)])
        direction = (base - centre) / abs(base - centre)
        ring = [complex(centre + radius * direction * np.exp(2j * np.pi * k / corners)) for k in range(corners)]
        lassos.append(Lasso(points[j], radius, [base, ring[0]], ring + [ring[0]]))
    far = 2 * max(abs(q - base) for q in where) + 1
    ring = [complex(base + far * np.exp(1j * (out + 2 * np.pi * k / (2 * corners)))) for k in range(2 * corners)]
    return LassoPaths(base, lassos, Lasso(None, far, [base, ring[0]], ring + [ring[0]]))


def monodromy(derivation: Derivation, digits: Optional[int] = 30, corners: int = 8,
              ratio: float = 0.5) -> Monodromy:
    """Monodromy matrices of the NVE around every finite singular point and around all of them.

    The fine integration runs in ``digits``-digit fixed point (or, with ``digits=None``, in
    double precision with steps 0.6 times as long as the coarse one's); the coarse one in complex
    double precision. Their differences are the error estimates used by ``analyse_group``.
    """
    if not isinstance(derivation, Derivation):
        raise TypeError(f"derivation must be a Derivation (see narrow.derive), got "
                        f"{type(derivation).__name__}")
    if digits is not None and (isinstance(digits, bool) or not isinstance(digits, Integral)
                               or not 16 <= digits <= 200):
        raise ValueError(f"digits must be None or an integer from 16 to 200, got {digits!r}")
    if isinstance(corners, bool) or not isinstance(corners, Integral) or corners < 4:
        raise ValueError(f"corners must be an integer >= 4, got {corners!r}")
    if not (isinstance(ratio, (int, float)) and 0.05 <= ratio <= 0.5):
        raise ValueError(f"ratio must be a number in [0.05, 0.5], got {ratio!r}")
    start = time.perf_counter()
    d, P = _coefficients(derivation)
    coarse = _DoubleSeries(d, P)
    fine: Union[_DoubleSeries, _FixedSeries] = (_DoubleSeries(d, P) if digits is None
                                                else _FixedSeries(d, P, int(digits)))
    fine_ratio = 0.6 * ratio if digits is None else ratio
    paths = lasso_paths(derivation, corners)
    where = [p.location for p in derivation.singular_points]

    def run(series: _Series[_Y], nodes: Sequence[complex], r: float) -> tuple[mpmath.matrix, int, int]:
        Y, steps, terms = _transport(series, nodes, where, r)
        return series.matrix(Y), steps, terms

    def loop_matrix(series: Union[_DoubleSeries, _FixedSeries], ray: Sequence[complex], polygon: Sequence[complex],
                    r: float) -> tuple[mpmath.matrix, int, int]:
        R, s1, t1 = run(series, ray, r)
        C, s2, t2 = run(series, polygon, r)
        with mpmath.workdps(DIGITS + 20):
            return R ** -1 * C * R, s1 + s2, t1 + t2

    loops: list[Loop] = []
    for lasso in paths.lassos:
        M, steps, terms = loop_matrix(fine, lasso.ray, lasso.polygon, fine_ratio)
        M_coarse = loop_matrix(coarse, lasso.ray, lasso.polygon, ratio)[0]
        loops.append(Loop(lasso.point, lasso.radius, M, M_coarse, steps, terms))
    around_all = loop_matrix(fine, paths.around_all.ray, paths.around_all.polygon, fine_ratio)[0]
    around_all_coarse = loop_matrix(coarse, paths.around_all.ray, paths.around_all.polygon, ratio)[0]
    base = paths.base
    result = Monodromy(derivation, base, loops, around_all, around_all_coarse, fine.name,
                       coarse.name, {}, 0.0)
    result.checks = _consistency(result)
    result.seconds = time.perf_counter() - start
    return result


def _consistency(mono: Monodromy) -> dict[str, mpmath.mpf]:
    """Residuals of identities the fine monodromy matrices must satisfy."""
    with mpmath.workdps(DIGITS):
        two_pi_i = 2j * mpmath.pi
        det = trace = 0
        for loop in mono.loops:
            p = loop.point
            det = max(det, abs(mpmath.det(loop.matrix) - mpmath.exp(two_pi_i * (p.residue[0, 0] + p.residue[1, 1]))))
            trace = max(trace, abs(loop.matrix[0, 0] + loop.matrix[1, 1]
                                   - sum(mpmath.exp(two_pi_i * e) for e in p.exponents)))
        # n(end) = M n(start), so running γ1 then γ2 gives M2 M1; the loop around everything,
        # leaving through the widest gap, is the lassos taken in counterclockwise order of rays.
        product = mpmath.eye(2)
        for loop in mono.loops:
            product = loop.matrix * product
        M = mono.around_all
        infinity = abs(M[0, 0] + M[1, 1] - sum(mpmath.exp(-two_pi_i * e) for e in mono.derivation.infinity.exponents))
        return {"det M = exp(2πi tr Res)": det,
                "tr M = Σ exp(2πi ρ)": trace,
                "product of the loops = loop around all": mpmath.mnorm(product - M, 1),
                "tr(loop around all) = Σ exp(−2πi ρ∞)": infinity}
