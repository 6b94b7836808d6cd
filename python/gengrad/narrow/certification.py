"""Certified monodromy of the odd models' normal variational equation, in ball arithmetic
(python-flint's arb/acb: the `certify` extra), and a verdict that rests on balls only.

The NVE d(s) n' = P(s) n has exact rational coefficients, simple poles and deg P < deg d (checked),
so A = P/d = Σ_j Res_j/(s − r_j) exactly; the roots r_j and residues Res_j = P(r_j)/d'(r_j) are
balls. Along the same lassos as continuation.monodromy (lasso_paths), each step from z to z + h
runs the Taylor recurrence (k + 1) Y_{k+1} = Σ_i a_i Y_{k−i}, a_i = Σ_j Res_j (−1)^i/(z − r_j)^(i+1),
in balls, and bounds what it leaves out by a majorant: with δ_j ≤ |z − r_j|, δ = min δ_j and
M = Σ_j ‖Res_j‖/δ_j, ‖a_i‖ ≤ M δ^-i, every solution is majorised by ‖Y(z)‖ (1 − u/δ)^(−Mδ), and the
terms after the k-th by ‖Y(z)‖ t_{k+1}/(1 − ρ), t_k = (Mδ)_k/k! (|h|/δ)^k, ρ a bound of
t_{m+1}/t_m for every later m. The series is summed until that is below 2^-bits (‖Y(z)‖ + 1),
and the bound is added to every entry as a radius.

The group, from balls, for H = {M/√det M}: an irreducibility witness (a commutator whose trace
ball excludes 2), an infinite-order element K (normalised trace certainly outside [−2, 2]) and
a primitivity witness G (tr G excludes 0 and GK − KG has an entry that excludes 0: G is neither
in the torus of K nor in the rest of its normaliser, whose elements have trace 0). The algebraic
subgroups of SL2 are reducible, imprimitive, finite or SL2, so the Zariski closure of H contains
SL2; the monodromy group has the same commutator subgroup (scalars commute), whose closure then
contains [SL2, SL2] = SL2, and so does the Galois group's identity component. "certified" only
when every inequality holds for the balls; otherwise "not certified" and the one that failed.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Sequence

import sympy as sp

from .continuation import lasso_paths, steps_along
from .derivation import Derivation, S, SingularPoint, as_fraction


def load_flint() -> Any:
    try:
        import flint
    except ImportError:
        raise ImportError("certification needs python-flint: pip install 'gengrad[certify]'", name="flint") from None
    return flint


@dataclass
class CertifiedLoop:
    """A lasso's monodromy as 2x2 complex balls (``matrix[i][j]``) and the widest radius."""

    point: SingularPoint
    matrix: list[list[Any]]
    radius: float
    steps: int


@dataclass
class Certificate:
    """``verdict``: "certified" or "not certified"; ``reason`` names the inequality that failed;
    ``witnesses`` maps each inequality to the word and the ball that proves it."""

    bits: int
    loops: list[CertifiedLoop]
    verdict: str
    reason: str
    witnesses: dict[str, tuple[str, Any]] = field(default_factory=dict)
    seconds: float = 0.0


def _largest(values: Sequence[Any]) -> Any:
    """An upper bound of the largest of the real balls (exact: arb's own max, then its upper end)."""
    result = values[0]
    for v in values[1:]:
        result = result.max(v)
    return result.upper()


def _smallest(values: Sequence[Any]) -> Any:
    """A lower bound of the smallest of the real balls."""
    result = values[0]
    for v in values[1:]:
        result = result.min(v)
    return result.lower()


def _horner(coefficients: Sequence[Any], x: Any) -> Any:
    """The polynomial with ascending ``coefficients`` at x."""
    value = coefficients[-1] * 0
    for c in reversed(coefficients):
        value = value * x + c
    return value


class _Balls:
    """The NVE's coefficients and singular points as balls, and one certified Taylor step."""

    def __init__(self, flint: Any, derivation: Derivation, bits: int):
        self.flint, self.bits = flint, bits
        acb = flint.acb
        d = [as_fraction(c) for c in reversed(derivation.denominator.all_coeffs())]
        polys = [[sp.Poly(derivation.numerator[i, j], S) for j in range(2)] for i in range(2)]
        self.d = [self.ball(c) for c in d]
        width = max(p.degree() for row in polys for p in row) + 1
        self.P = [[[self.ball(as_fraction(c)) for c in reversed(p.all_coeffs())] for p in row] for row in polys]
        self.P = [[entry + [flint.acb(0)] * (width - len(entry)) for entry in row] for row in self.P]
        # A = P/d = Σ_j Res_j / (s − r_j) exactly when d has simple roots and deg P < deg d (a
        # Fuchsian system with simple poles, also at ∞): the majorant below rests on that.
        _, factors = sp.factor_list(derivation.denominator, S)
        if any(multiplicity > 1 for _, multiplicity in factors) or width >= len(d):
            raise ArithmeticError("the NVE is not of the form Σ Res_j/(s − r_j) (a multiple root of d or "
                                  "deg P ≥ deg d): not handled")
        self.roots: list[tuple[Any, int]] = []
        for factor, _ in factors:
            poly = sp.Poly(factor, S)
            coefficients = [self.ball(as_fraction(c)) for c in reversed(poly.all_coeffs())]
            tolerance = flint.arb(2) ** -(bits + 16)
            try:
                self.roots += [(r, 1) for r in flint.acb_poly(coefficients).roots(tol=tolerance)]
            except ValueError as error:   # arb could not isolate them at this precision
                raise ArithmeticError(f"the singular points could not be isolated: {error}") from None
        derivative = [k * c for k, c in enumerate(self.d)][1:]
        # Res_j = P(r_j)/d'(r_j), and ‖Res_j‖∞ = max_i Σ_j |Res_j,i,j|
        self.residues = []
        for r, _ in self.roots:
            slope = _horner(derivative, r)
            self.residues.append([[_horner(self.P[i][j], r) / slope for j in range(2)] for i in range(2)])
        self.residue_norms = [_largest([sum((abs(R[i][j]) for j in range(2)), flint.arb(0)) for i in range(2)])
                              for R in self.residues]
        self.zero = acb(0)

    def ball(self, q: Fraction) -> Any:
        return self.flint.acb(self.flint.arb(self.flint.fmpq(q.numerator, q.denominator)))

    def step(self, Y: list[list[Any]], z: complex, z1: complex) -> list[list[Any]]:
        """The fundamental matrix at z1 from Y at z, with the tail bound in every entry."""
        total, tail, _ = self.series(Y, z, z1)
        tail_ball = self.flint.acb(self.flint.arb(0, tail), self.flint.arb(0, tail))
        return [[total[a][b] + tail_ball for b in range(2)] for a in range(2)]

    def series(self, Y: list[list[Any]], z: complex, z1: complex, extra: int = 0
               ) -> tuple[list[list[Any]], Any, float]:
        """The truncated Taylor sum from z to z1, the bound of what it leaves out, and (for tests
        of that bound) the largest entry of the sum of the next ``extra`` terms."""
        flint = self.flint
        arb, acb = flint.arb, flint.acb
        # z and z1 are doubles, exact as balls; their difference is taken in balls (in doubles it
        # would round, and the next step would start where this one did not end)
        centre = acb(z.real, z.imag)
        h = acb(z1.real, z1.imag) - centre
        distances = [abs(centre - r).lower() for r, _ in self.roots]
        reach = _smallest(distances)
        size = abs(h).upper()
        if not size < reach:
            raise ArithmeticError(f"a step of length {float(size):.3g} from {z} reaches a singular point")
        # Taylor coefficients of A = Σ Res_j/(s − r_j) at z: ‖a_k‖ ≤ Σ_j ‖Res_j‖ δ_j^-(k+1)
        # ≤ M δ^-k with δ = min δ_j, M = Σ_j ‖Res_j‖/δ_j: the majorant M/(1 − u/δ)
        M = sum((norm / delta for norm, delta in zip(self.residue_norms, distances)), arb(0)).upper()
        alpha, q = (M * reach).upper(), (size / reach).upper()
        norm = _largest([abs(Y[i][c]) for i in range(2) for c in range(2)])
        tolerance = arb(2) ** (-self.bits) * (norm + 1)
        # Y' = A Y with A(z + u) = Σ_k a_k u^k, a_k = Σ_j Res_j (−1)^k / (z − r_j)^(k+1); on the
        # scaled Z_k = Y_k h^k and Ā_k = a_k h^(k+1): (k + 1) Z_{k+1} = Σ_{i≤k} Ā_i Z_{k−i}. Every
        # quantity here is bounded by the majorant, so the balls' radii grow no faster than it.
        ratios = [h / (centre - r) for r, _ in self.roots]     # |h/(z − r_j)| ≤ q < 1
        powers = list(ratios)                                   # (h/(z − r_j))^(k+1)
        A_bar: list[list[list[Any]]] = []
        Z = [Y]
        total = [[Y[a][b] for b in range(2)] for a in range(2)]
        term = arb(1)                     # t_k = (α)_k / k! q^k of the majorant
        k = 0
        summed, remaining = False, extra
        beyond = [[self.zero, self.zero], [self.zero, self.zero]]
        while True:
            term = term * (alpha + k) / (k + 1) * q          # t_{k+1}, the first term not summed
            # t_{m+1}/t_m = (α + m)/(m + 1) q ≤ q max(1, (α + k + 1)/(k + 2)) for every m > k
            ratio = q * _largest([arb(1), (alpha + k + 1) / (k + 2)])
            if not summed and ratio < 1:
                tail = (norm * term / (1 - ratio)).upper()
                summed = tail < tolerance
            if summed:
                if remaining == 0:
                    break
                remaining -= 1
            if k > 4000:
                raise ArithmeticError(f"the majorant did not fall below 2^-{self.bits} in 4000 terms")
            sign = -1 if k % 2 else 1
            A_bar.append([[sum((sign * R[a][b] * w for R, w in zip(self.residues, powers)), self.zero)
                           for b in range(2)] for a in range(2)])
            powers = [w * x for w, x in zip(powers, ratios)]
            new = [[self.zero, self.zero], [self.zero, self.zero]]
            for a in range(2):
                for b in range(2):
                    acc = self.zero
                    for i in range(k + 1):
                        acc += A_bar[i][a][0] * Z[k - i][0][b] + A_bar[i][a][1] * Z[k - i][1][b]
                    new[a][b] = acc / (k + 1)
            Z.append(new)
            for a in range(2):
                for b in range(2):
                    if summed:
                        beyond[a][b] += new[a][b]
                    else:
                        total[a][b] += new[a][b]
            k += 1
        largest = max(abs(complex(beyond[a][b].mid())) for a in range(2) for b in range(2))
        return total, tail, largest


def _transport(balls: _Balls, nodes: Sequence[complex], singular: Sequence[complex], ratio: float
               ) -> tuple[list[list[Any]], int]:
    """The fundamental matrix along the polyline, from the identity; steps of at most ``ratio``
    times the (floating-point) distance to the nearest singular point, each checked rigorously."""
    acb = balls.flint.acb
    Y = [[acb(1), acb(0)], [acb(0), acb(1)]]
    steps = 0
    for z, nxt in steps_along(nodes, singular, ratio):
        Y = balls.step(Y, z, nxt)
        steps += 1
    return Y, steps


def _product(A: list[list[Any]], B: list[list[Any]]) -> list[list[Any]]:
    return [[A[i][0] * B[0][j] + A[i][1] * B[1][j] for j in range(2)] for i in range(2)]


def _determinant(A: list[list[Any]]) -> Any:
    return A[0][0] * A[1][1] - A[0][1] * A[1][0]


def _inverse(A: list[list[Any]]) -> list[list[Any]]:
    det = _determinant(A)
    return [[A[1][1] / det, -A[0][1] / det], [-A[1][0] / det, A[0][0] / det]]


def _trace(A: list[list[Any]]) -> Any:
    return A[0][0] + A[1][1]


def _normalised(A: list[list[Any]]) -> list[list[Any]]:
    det = _determinant(A)
    # any square root normalises; away from the cut of acb's sqrt, whose ball would cover both
    root = det.sqrt() if float(det.real.mid()) >= 0 else (-det).sqrt() * type(det)(0, 1)
    return [[A[i][j] / root for j in range(2)] for i in range(2)]


def _check_lassos(balls: _Balls, paths: Any, corners: int) -> None:
    """Each polygon encloses exactly one root of d, the one within its inscribed circle around the
    centre (the floating-point location the lasso is named for), and no other; the outer polygon
    encloses them all."""
    acb = balls.flint.acb
    for lasso in paths.lassos:
        centre = acb(lasso.point.location.real, lasso.point.location.imag)
        inside = [r for r, _ in balls.roots if abs(r - centre).upper() < lasso.radius * _cos_pi_over(corners)]
        outside = [r for r, _ in balls.roots if abs(r - centre).lower() > lasso.radius]
        if len(inside) != 1 or len(inside) + len(outside) != len(balls.roots):
            raise ArithmeticError(f"the polygon around {lasso.point.location:.6g} does not provably enclose "
                                  "exactly one singular point, the one at its centre")
    base = acb(paths.base.real, paths.base.imag)
    far = paths.around_all.radius * _cos_pi_over(2 * corners)
    if not all(abs(r - base).upper() < far for r, _ in balls.roots):
        raise ArithmeticError("the outer polygon does not provably enclose every singular point")


def _cos_pi_over(n: int) -> float:
    import math
    return math.cos(math.pi / n) * (1 - 1e-12)   # the polygon's inscribed radius, rounded down


def _entries(A: list[list[Any]]) -> list[Any]:
    return [A[0][0], A[0][1], A[1][0], A[1][1]]


def _excludes_zero(flint: Any, x: Any) -> bool:
    return not x.contains(flint.acb(0))


def _group(flint: Any, generators: Sequence[list[list[Any]]], names: Sequence[str]
           ) -> tuple[str, str, dict[str, tuple[str, Any]]]:
    """The three witnesses of docs/narrow.md (irreducible, infinite, primitive), from balls."""
    witnesses: dict[str, tuple[str, Any]] = {}
    n = len(generators)
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
    for i, j in pairs:
        A, B = generators[i], generators[j]
        t = _trace(_product(_product(A, B), _product(_inverse(A), _inverse(B)))) - 2
        if _excludes_zero(flint, t):
            witnesses["irreducible"] = (f"tr[M({names[i]}), M({names[j]})] − 2", t)
            break
    else:
        return "not certified", "no commutator of two loops has a trace ball that excludes 2", witnesses
    words = [(f"M({names[i]})", generators[i]) for i in range(n)]
    for i, j in pairs:
        words += [(f"M({names[i]}) M({names[j]})", _product(generators[i], generators[j])),
                  (f"M({names[i]}) M({names[j]})⁻¹", _product(generators[i], _inverse(generators[j])))]
    for label, K in words:
        t = _trace(K)
        if abs(t.imag).lower() > 0 or abs(t.real).lower() > 2:
            witnesses["infinite"] = (f"tr {label} (normalised), outside [−2, 2]", t)
            break
    else:
        return "not certified", "no short word has a normalised trace ball outside [−2, 2]", witnesses
    for i, G in enumerate(generators):
        commutes = [_product(G, K)[a][b] - _product(K, G)[a][b] for a in range(2) for b in range(2)]
        moving = [c for c in commutes if _excludes_zero(flint, c)]
        if _excludes_zero(flint, _trace(G)) and moving:
            witnesses["primitive"] = (f"M({names[i]}): trace ≠ 0 and does not commute with {label}", moving[0])
            break
    else:
        return "not certified", f"no loop provably leaves the normaliser of the torus of {label}", witnesses
    return "certified", "", witnesses


def certify(derivation: Derivation, bits: int = 128, corners: int = 8, ratio: float = 0.5) -> Certificate:
    """Ball enclosures of the monodromies of the NVE along lasso_paths, and the verdict on the
    group they generate ("certified": its Zariski closure contains SL2, proved by the balls).
    ``bits``: the target radius 2^-bits of each step's truncation (the working precision is
    32 bits more); for the odd models (narrow.derive), whose NVE is Fuchsian with rational
    coefficients."""
    if not isinstance(derivation, Derivation):
        raise TypeError(f"derivation must be a Derivation (see narrow.derive), got {type(derivation).__name__}")
    if isinstance(bits, bool) or not isinstance(bits, int) or not 32 <= bits <= 2048:
        raise ValueError(f"bits must be an integer from 32 to 2048, got {bits!r}")
    if isinstance(corners, bool) or not isinstance(corners, int) or corners < 4:
        raise ValueError(f"corners must be an integer >= 4, got {corners!r}")
    if not (isinstance(ratio, (int, float)) and 0.05 <= ratio <= 0.5):
        raise ValueError(f"ratio must be a number in [0.05, 0.5], got {ratio!r}")
    flint = load_flint()
    start = time.perf_counter()
    saved = flint.ctx.prec
    flint.ctx.prec = bits + 32
    try:
        balls = _Balls(flint, derivation, bits)
        paths = lasso_paths(derivation, corners)
        _check_lassos(balls, paths, corners)
        where = [p.location for p in derivation.singular_points]
        loops = []
        for lasso in paths.lassos:
            assert lasso.point is not None   # only the loop around everything has none
            R, ray_steps = _transport(balls, lasso.ray, where, ratio)
            C, ring_steps = _transport(balls, lasso.polygon, where, ratio)
            M = _product(_product(_inverse(R), C), R)
            widest = max(max(float(e.real.rad()), float(e.imag.rad())) for e in _entries(M))
            loops.append(CertifiedLoop(lasso.point, M, widest, ray_steps + ring_steps))
        on_curve = [loop for loop in loops if loop.point.on_curve]
        names = [f"{loop.point.location:.6g}" for loop in on_curve]
        verdict, reason, witnesses = _group(flint, [_normalised(loop.matrix) for loop in on_curve], names)
    except ArithmeticError as error:
        return Certificate(bits, [], "not certified", str(error), {}, time.perf_counter() - start)
    finally:
        flint.ctx.prec = saved
    return Certificate(bits, loops, verdict, reason, witnesses, time.perf_counter() - start)


def report_certificate(certificate: Certificate, out: Any = print) -> None:
    """Print a certificate: the loops' widest radii, the witnesses and the verdict."""
    out(f"certified monodromy (ball arithmetic, truncation 2^-{certificate.bits} (‖Y‖ + 1) a step, "
        f"{certificate.seconds:.1f} s):")
    for loop in certificate.loops:
        out(f"   loop around {loop.point.location:.6g}: {loop.steps} steps, widest radius {loop.radius:.1e}")
    for name, (label, ball) in certificate.witnesses.items():
        out(f"   {name}: {label} = {ball.str(15)}")
    if certificate.verdict == "certified":
        out("   verdict: certified. The balls prove that the lassos' normalised monodromy group is irreducible,")
        out("   infinite and primitive, so the Zariski closure of the monodromy's commutator subgroup, inside")
        out("   the NVE's differential Galois group, is SL2: G⁰ is not solvable. A computer-assisted proof,")
        out("   given SymPy's exact derivation of the NVE and the theorems cited in docs/narrow.md.")
    else:
        out(f"   verdict: not certified: {certificate.reason}")
