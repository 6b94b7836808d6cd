"""The model, and steps 1-4 of the construction: the vector field, the invariant plane, the
particular solution, the normal variational equation, its singular points and exponents."""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from numbers import Integral, Rational
from typing import Union

import mpmath
import sympy as sp
from sympy.integrals.rationaltools import ratint

#: A target y* as narrow.model takes it.
TargetLike = Union[int, Fraction, str, float]

ARCHITECTURES = ("biased", "bias_free")
ACTIVATIONS = ("tanh", "identity")

# Symbols shared by every derivation: the plane coordinates (w, v), the normal coordinates
# (n1, n2) and the algebraic coordinate s along the particular solution.
W, V, N1, N2, S = sp.symbols("w v n1 n2 s")
# Working precision (decimal digits) of the exponents, residues and singular points.
DIGITS = 40


@dataclass(frozen=True)
class Model:
    """One four-parameter network with its data and loss (assumptions A1-A3 above)."""

    architecture: str = "biased"
    activation: str = "tanh"
    target: Fraction = Fraction(1)

    @property
    def params(self) -> tuple[sp.Symbol, ...]:
        names = "w b v c" if self.architecture == "biased" else "w1 w2 v1 v2"
        symbols: tuple[sp.Symbol, ...] = sp.symbols(names, real=True)
        return symbols

    @property
    def widths(self) -> tuple[int, int, int]:
        """gengrad's widths for this model."""
        return (1, 1, 1) if self.architecture == "biased" else (1, 2, 1)

    @property
    def gengrad_indices(self) -> tuple[int, ...]:
        """Where θ's four entries sit in gengrad's flat parameter vector (docs/math.md §1)."""
        return (0, 1, 2, 3) if self.architecture == "biased" else (0, 1, 4, 5)

    @property
    def data(self) -> tuple[tuple[int, int], tuple[Fraction, Fraction]]:
        """(inputs, targets): the odd pair (1, y*), (−1, −y*)."""
        return (1, -1), (self.target, -self.target)

    @property
    def sample_weight(self) -> tuple[float, float]:
        """gengrad's weights that make its risk Σ w_m (z − y)² equal L = ½ Σ (f − y)²."""
        return (0.5, 0.5)

    def sigma(self, u: sp.Expr) -> sp.Expr:
        return sp.tanh(u) if self.activation == "tanh" else u

    def network(self, x: sp.Expr) -> sp.Expr:
        """f(x) as a SymPy expression in the parameters."""
        if self.architecture == "biased":
            w, b, v, c = self.params
            return v * self.sigma(w * x + b) + c
        w1, w2, v1, v2 = self.params
        return v1 * self.sigma(w1 * x) + v2 * self.sigma(w2 * x)

    def __str__(self) -> str:
        f = self.network(sp.Symbol("x"))
        return (f"{self.architecture} network f(x) = {f}, θ = {self.params}, σ = {self.activation}, "
                f"data (1, {self.target}), (-1, {-self.target})")


def model(architecture: str = "biased", activation: str = "tanh", target: TargetLike = 1) -> Model:
    """A Model, with its arguments checked. ``target`` is y* > 0: an int, a Fraction, a string
    such as "1/2", or a float (read through its decimal representation, 0.3 -> 3/10)."""
    if not isinstance(architecture, str) or architecture not in ARCHITECTURES:
        raise ValueError(f"architecture must be one of {', '.join(ARCHITECTURES)}, got {architecture!r}")
    if not isinstance(activation, str) or activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)} for the odd construction "
                         f"(softplus, sigmoid, silu and gelu take narrow.relaxation_model), got {activation!r}")
    return Model(architecture, activation, rational_target(target))


def rational_target(target: object) -> Fraction:
    if isinstance(target, bool):
        raise TypeError(f"target must be a positive rational number, got {target!r}")
    try:
        if isinstance(target, (Integral, Rational, str)):
            value = Fraction(target)
        elif isinstance(target, float):
            value = Fraction(repr(target))
        else:
            raise TypeError
    except (TypeError, ValueError, ZeroDivisionError):
        raise TypeError(f"target must be a positive rational number (int, Fraction, 'p/q' or a "
                        f"finite float), got {target!r}") from None
    if value <= 0:
        raise ValueError(f"target must be > 0 (y* < 0 is the mirror image v -> -v), got {value}")
    return value


# --- 1-4: the symbolic derivation ---------------------------------------------------------------

@dataclass
class SingularPoint:
    """A singular point of the NVE dn/ds = A(s) n: its location, the residue of A there and the
    local exponents (eigenvalues of the residue: the roots of the Frobenius indicial equation
    det(ρ − Res) = 0). ``on_curve`` says whether small loops around it lie on the particular
    solution's Riemann surface (s = e^w never reaches 0, so for tanh s = 0 is not)."""

    location: complex            # s_j (numerically; `factor` holds it exactly)
    factor: sp.Expr              # the irreducible factor of the denominator that vanishes there
    residue: mpmath.matrix       # 2x2
    exponents: tuple[mpmath.mpc, ...]
    on_curve: bool


@dataclass
class Derivation:
    """Everything derived symbolically for one model (steps 1-4 of docs/narrow.md)."""

    model: Model
    risk: sp.Expr
    vector_field: tuple[sp.Expr, ...]           # F = −∇L, one expression per parameter
    plane: tuple[sp.Eq, ...]                    # the two equations defining the invariant plane P
    plane_field: tuple[sp.Expr, sp.Expr]        # (ẇ, v̇) on P, in the plane coordinates (w, v)
    normal_field_on_plane: tuple[sp.Expr, sp.Expr]  # (ṅ1, ṅ2) on P: zero, which is P's invariance
    first_integral: sp.Expr       # J(w, v)
    first_integral_rate: sp.Expr  # dJ/dt on P: zero
    curve_v: sp.Expr              # v = V(w) on Γ
    w_of_s: sp.Expr               # w as a function of the algebraic coordinate s
    theta_of_s: tuple[sp.Expr, ...]  # Γ: θ(s)
    speed: sp.Expr                # ṡ = ds/dt on Γ, rational in s
    time_law: sp.Expr             # T(s) with T' = 1/ṡ: t = T(s(t)) − T(s(0))
    time_law_residual: sp.Expr    # T' − 1/ṡ, simplified: zero
    flow_residual: tuple[sp.Expr, ...]  # F(θ(s)) − θ'(s) ṡ, simplified: zero
    normal_jacobian: sp.Matrix    # ∂(ṅ1, ṅ2)/∂(n1, n2) on P, in (w, v)
    lower_left: sp.Matrix         # ∂(ṅ1, ṅ2)/∂(w, v) on P: zero, so the VE is block triangular
    tangential: sp.Matrix         # the VE's (δw, δv) block along Γ, d/ds, rational in s
    tangential_residual: tuple[sp.Expr, ...]  # the velocity ṡ dθ/ds solves that block: zero
    nve: sp.Matrix                # A(s): dn/ds = A(s) n
    denominator: sp.Poly          # common denominator d(s) of A
    numerator: sp.Matrix          # P(s) = d(s) A(s), polynomial entries
    singular_points: list[SingularPoint]
    infinity: SingularPoint
    fuchsian: bool                # simple poles at every finite singular point and at ∞


def plane_coordinates(m: Model) -> sp.Matrix:
    """C with (w, v, n1, n2) = C θ: plane coordinates first, then normal coordinates."""
    if m.architecture == "biased":          # θ = (w, b, v, c); P = {b = c = 0}
        return sp.Matrix([[1, 0, 0, 0], [0, 0, 1, 0], [0, 1, 0, 0], [0, 0, 0, 1]])
    half = sp.Rational(1, 2)                # θ = (w1, w2, v1, v2); P = {w1 = w2, v1 = v2}
    return sp.Matrix([[half, half, 0, 0], [0, 0, half, half], [1, -1, 0, 0], [0, 0, 1, -1]])


def _curve_v(m: Model) -> sp.Expr:
    """The branch v = V(w) of J = 0 through the origin: V² = Φ with Φ' = 2σ/σ' (derive checks
    that J = v² − V(w)² is conserved on P, which is this condition)."""
    return sp.sinh(W) if m.activation == "tanh" else W


def _w_of_s(m: Model) -> sp.Expr:
    """The algebraic coordinate: s = e^w makes tanh's field rational; the identity's already is."""
    return sp.log(S) if m.activation == "tanh" else S


def _in_s(m: Model, expr: sp.Expr) -> sp.Expr:
    """An expression in w, or in s and log(s), with hyperbolic functions of them, as a rational
    function of s (and of any other symbols in it)."""
    if m.activation == "tanh":
        expr = sp.sympify(expr).rewrite(sp.exp).subs(W, sp.log(S))
    else:
        expr = sp.sympify(expr).subs(W, S)
    return sp.factor(sp.cancel(expr))


def derive(m: Model) -> Derivation:
    """Vector field, invariant plane, first integral, particular solution, time law and NVE."""
    if not isinstance(m, Model):
        raise TypeError(f"m must be a gengrad.narrow.Model (see narrow.model), got {type(m).__name__}")
    theta = m.params
    xs, ys = m.data
    risk = sp.Rational(1, 2) * sum((m.network(x) - sp.Rational(y.numerator, y.denominator)) ** 2
                                   for x, y in zip(xs, ys))
    vector_field = tuple(-sp.diff(risk, p) for p in theta)

    C = plane_coordinates(m)
    theta_of_q = C.inv() * sp.Matrix([W, V, N1, N2])
    to_q = dict(zip(theta, theta_of_q))
    G = C * sp.Matrix([f.subs(to_q) for f in vector_field])
    on_plane = {N1: 0, N2: 0}
    plane = tuple(sp.Eq(row, 0) for row in C[2:, :] * sp.Matrix(theta))
    # On P every hyperbolic function is one of tanh(±w), so the expressions are rational in
    # tanh(w), v and y*: factor simplifies them exactly (and much faster than simplify).
    plane_field = (sp.factor(G[0].subs(on_plane)), sp.factor(G[1].subs(on_plane)))
    normal_on_plane = (sp.factor(G[2].subs(on_plane)), sp.factor(G[3].subs(on_plane)))
    jacobian = G.jacobian([W, V, N1, N2]).subs(on_plane)
    normal_jacobian = jacobian[2:, 2:].applyfunc(sp.factor)
    lower_left = jacobian[2:, :2].applyfunc(sp.factor)

    curve_v = _curve_v(m)
    first_integral = V**2 - curve_v**2
    rate = sp.factor(_in_s(m, plane_field[0] * sp.diff(first_integral, W)
                           + plane_field[1] * sp.diff(first_integral, V)))

    w_of_s = _w_of_s(m)
    dw_ds = sp.diff(w_of_s, S)
    speed = sp.factor(sp.cancel(_in_s(m, plane_field[0].subs(V, curve_v)) / dw_ds))
    # Rational integration (Lazard-Rioboo-Trager): logarithms of factors of ṡ's numerator.
    time_law = ratint(sp.cancel(1 / speed), S, real=False)
    time_law_residual = sp.cancel(sp.diff(time_law, S) - 1 / speed)

    theta_of_s = tuple(_in_s(m, e) for e in theta_of_q.subs({W: w_of_s, V: curve_v.subs(W, w_of_s),
                                                             **on_plane}))
    flow_residual = tuple(sp.cancel(_in_s(m, f.subs(dict(zip(theta, theta_of_s))))
                                    - _in_s(m, sp.diff(t, S) * speed))
                          for f, t in zip(vector_field, theta_of_s))

    # The whole variational equation along Γ in (δw, δv, n1, n2), with s as the independent
    # variable: dξ/ds = B(s) ξ, B = (Jacobian at θ(s)) / ṡ. Its lower-left block vanishes
    # (P is invariant), so the normal block A = B[n, n] is a quotient system; the tangential
    # block has the known solution ṡ dθ/ds (the velocity), so it reduces to a quadrature.
    tangential = (jacobian[:2, :2].subs(V, curve_v).applyfunc(lambda e: _in_s(m, e)) / speed
                  ).applyfunc(lambda e: sp.factor(sp.cancel(e)))
    velocity = sp.Matrix([sp.cancel(speed * dw_ds), _in_s(m, sp.diff(curve_v.subs(W, w_of_s), S) * speed)])
    tangential_residual = tuple(sp.cancel(e) for e in velocity.diff(S) - tangential * velocity)

    nve = (normal_jacobian.subs(V, curve_v) / plane_field[0].subs(V, curve_v)).applyfunc(
        lambda e: _in_s(m, e)) * dw_ds
    nve = nve.applyfunc(lambda e: sp.factor(sp.cancel(e)))
    denominator = sp.Poly(sp.lcm([sp.denom(sp.cancel(e)) for e in nve]), S).monic()
    numerator = (nve * denominator.as_expr()).applyfunc(sp.cancel)
    points, infinity, fuchsian = _singular_points(m, denominator, numerator, DIGITS)
    return Derivation(m, risk, vector_field, plane, plane_field, normal_on_plane, first_integral,
                      rate, curve_v, w_of_s, theta_of_s, speed, time_law, time_law_residual,
                      flow_residual, normal_jacobian, lower_left, tangential, tangential_residual,
                      nve, denominator, numerator, points, infinity, fuchsian)


def _singular_points(m: Model, denominator: sp.Poly, numerator: sp.Matrix, dps: int
                     ) -> tuple[list[SingularPoint], SingularPoint, bool]:
    """The finite singular points with residues and exponents, the point at ∞, and whether the
    system is Fuchsian with simple poles (then the residues give the exponents exactly)."""
    d_prime = denominator.diff(S)
    polys = [[sp.Poly(numerator[i, j], S) for j in range(2)] for i in range(2)]
    points: list[SingularPoint] = []
    squarefree = True
    with mpmath.workdps(dps):
        for factor, multiplicity in sp.factor_list(denominator.as_expr())[1]:
            squarefree &= multiplicity == 1
            coeffs = [_mpf(c) for c in sp.Poly(factor, S).all_coeffs()]
            roots = [mpmath.mpc(coeffs[1] / -coeffs[0])] if len(coeffs) == 2 else \
                mpmath.polyroots(coeffs, maxsteps=200, extraprec=2 * dps)
            for root in roots:
                scale = _poly_at(d_prime, root)
                residue = mpmath.matrix([[_poly_at(polys[i][j], root) / scale for j in range(2)]
                                         for i in range(2)])
                exponents = _sorted_eigenvalues(residue, dps)
                on_curve = not (m.activation == "tanh" and root == 0)
                points.append(SingularPoint(complex(root), factor, residue, exponents, on_curve))
        degree = denominator.degree()
        at_infinity = mpmath.matrix([[-_coeff(polys[i][j], degree - 1) for j in range(2)]
                                     for i in range(2)])
        simple_at_infinity = all(polys[i][j].degree() <= degree - 1 for i in range(2) for j in range(2))
        infinity = SingularPoint(complex("inf"), sp.oo, at_infinity,
                                 _sorted_eigenvalues(at_infinity, dps), False)
    points.sort(key=lambda p: (p.location.real, p.location.imag))
    return points, infinity, bool(squarefree and simple_at_infinity)


def _sorted_eigenvalues(M: mpmath.matrix, dps: int) -> tuple[mpmath.mpc, ...]:
    values = [mpmath.chop(e, tol=mpmath.mpf(10) ** (8 - dps)) for e in mpmath.eig(M, left=False, right=False)]
    return tuple(sorted(values, key=lambda z: (float(mpmath.re(z)), float(mpmath.im(z)))))


def exponent_polynomials(derivation: Derivation) -> dict[sp.Expr, list[sp.Expr]]:
    """For every irreducible factor f of the NVE's denominator, the monic irreducible polynomials
    over Q whose roots are the local exponents at the roots of f: exact, from the resultant in r
    of f(r) and the characteristic polynomial of the residue P(r)/d'(r). An exponent whose
    polynomial has degree > 1 is irrational, so exp(2πiρ) is no root of unity and the local
    monodromy has infinite order."""
    x, r = sp.symbols("x r")
    d_prime = derivation.denominator.diff(S).as_expr().subs(S, r)
    R = derivation.numerator.subs(S, r) / d_prime
    characteristic = sp.together(x**2 - (R[0, 0] + R[1, 1]) * x + (R[0, 0] * R[1, 1] - R[0, 1] * R[1, 0]))
    numerator, _ = sp.fraction(characteristic)
    result: dict[sp.Expr, list[sp.Expr]] = {}
    for factor, _ in sp.factor_list(derivation.denominator.as_expr())[1]:
        resultant = sp.resultant(sp.Poly(factor.subs(S, r), r), sp.Poly(numerator, r))
        result[factor] = sorted({sp.Poly(g, x).monic().as_expr() for g, _ in sp.factor_list(resultant, x)[1]},
                                key=sp.default_sort_key)
    return result


def _mpf(rational: sp.Rational) -> mpmath.mpf:
    """A SymPy rational as an mpmath number at the working precision (rounded once)."""
    q = sp.Rational(rational)
    return mpmath.mpf(q.p) / q.q


def as_fraction(rational: sp.Rational) -> Fraction:
    q = sp.Rational(rational)
    return Fraction(int(q.p), int(q.q))


def _poly_at(poly: sp.Poly, z: mpmath.mpc) -> mpmath.mpc:
    value = mpmath.mpf(0)
    for c in poly.all_coeffs():
        value = value * z + _mpf(c)
    return value


def _coeff(poly: sp.Poly, degree: int) -> mpmath.mpf:
    return _mpf(poly.coeff_monomial(S**degree))


def number_text(x: object, digits: int = 10) -> str:
    """x (an mpmath or Python number) to `digits` significant digits; complex only where its
    imaginary part is not negligible (above 1e-12 of its size)."""
    z = mpmath.mpmathify(x)
    if isinstance(z, mpmath.mpc) and abs(mpmath.im(z)) > 1e-12 * max(1, abs(z)):
        return str(mpmath.nstr(z, digits))
    return str(mpmath.nstr(mpmath.re(z), digits))
