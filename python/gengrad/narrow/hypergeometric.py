"""Step 6: the Gauss hypergeometric form of the normal variational equation, and Kimura's theorem."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

import sympy as sp

from .derivation import Derivation, S, TargetLike

# --- 6: Gauss hypergeometric form and Kimura's theorem ------------------------------------------

# Kimura's list (after Schwarz) of exponent differences (λ, μ, ν) for which the hypergeometric
# equation has algebraic solutions: entries r + integer, the third of row 1 arbitrary; "even"
# rows need the three integers to have an even sum (Kimura 1969; Morales-Ruiz 1999, Thm 2.8).
_HALF, _THIRD, _QUARTER, _FIFTH = (sp.Rational(1, k) for k in (2, 3, 4, 5))
_SCHWARZ = [
    ((_HALF, _HALF, None), False), ((_HALF, _THIRD, _THIRD), False),
    ((2 * _THIRD, _THIRD, _THIRD), True), ((_HALF, _THIRD, _QUARTER), False),
    ((2 * _THIRD, _QUARTER, _QUARTER), True), ((_HALF, _THIRD, _FIFTH), False),
    ((2 * _FIFTH, _THIRD, _THIRD), True), ((2 * _THIRD, _FIFTH, _FIFTH), True),
    ((_HALF, 2 * _FIFTH, _FIFTH), False), ((3 * _FIFTH, _THIRD, _FIFTH), True),
    ((2 * _FIFTH, 2 * _FIFTH, 2 * _FIFTH), True), ((2 * _THIRD, _THIRD, _FIFTH), True),
    ((4 * _FIFTH, _FIFTH, _FIFTH), True), ((_HALF, 2 * _FIFTH, _THIRD), False),
    ((3 * _FIFTH, 2 * _FIFTH, _THIRD), True),
]


@dataclass
class GaussForm:
    """The NVE's first component p = n1 in the variable ζ = s²/y* satisfies
    ζ(1 − ζ) p'' + (c − (a + b + 1) ζ) p' − a b p = 0."""

    a: sp.Expr
    b: sp.Expr
    c: sp.Expr
    exponent_differences: tuple[sp.Expr, sp.Expr, sp.Expr]  # (λ, μ, ν) = (1 − c, c − a − b, a − b)


def scalar_equation(derivation: Derivation) -> Optional[tuple[sp.Expr, sp.Expr]]:
    """(α, β) with p'' + α p' + β p = 0 for p = n1, eliminated from the 2x2 NVE (needs a12 ≠ 0)."""
    A = derivation.nve
    a11, a12, a21, a22 = A[0, 0], A[0, 1], A[1, 0], A[1, 1]
    if a12 == 0:
        return None
    log_a12 = sp.diff(a12, S) / a12
    alpha = sp.cancel(-(a11 + a22 + log_a12))
    beta = sp.cancel(a11 * a22 - a12 * a21 + a11 * log_a12 - sp.diff(a11, S))
    return alpha, beta


def gauss_form(derivation: Derivation) -> Optional[GaussForm]:
    """The Gauss hypergeometric form of the NVE under ζ = s²/y*, if it has one (else None)."""
    y = sp.Rational(derivation.model.target.numerator, derivation.model.target.denominator)
    if sp.rem(S * (S**2 - y), derivation.denominator.as_expr(), S) != 0:
        return None     # a singular point other than s = 0, ±√y*: ζ = 0, 1, ∞ cannot hold them
    equation = scalar_equation(derivation)
    if equation is None:
        return None
    alpha, beta = equation
    zeta = sp.Symbol("zeta")
    # p_s = (2s/y) p_ζ and p_ss = (4ζ/y) p_ζζ + (2/y) p_ζ turn the equation into
    # p_ζζ + P(ζ) p_ζ + Q(ζ) p = 0 with P = (1 + α s)/(2ζ), Q = β y/(4ζ); α s and β must be
    # even in s for P and Q to be rational in ζ.
    even = []
    for expr in (alpha * S, beta):
        odd_part = sp.cancel((expr - expr.subs(S, -S)) / 2)
        if odd_part != 0:
            return None
        even.append(sp.cancel(expr.subs(S, sp.sqrt(y * zeta))))
    P = sp.cancel((1 + even[0]) / (2 * zeta) * zeta * (1 - zeta))
    Q = sp.cancel(even[1] * y / (4 * zeta) * zeta * (1 - zeta))
    if not (P.is_polynomial(zeta) and Q.is_polynomial(zeta)):
        return None
    P, Q = sp.Poly(P, zeta), sp.Poly(Q, zeta)
    if P.degree() > 1 or Q.degree() > 0:
        return None
    c = P.coeff_monomial(1)
    a_plus_b = -P.coeff_monomial(zeta) - 1
    ab = -Q.coeff_monomial(1)
    x = sp.Symbol("x")
    roots = sp.solve(x**2 - a_plus_b * x + ab, x)
    a, b = (roots[0], roots[0]) if len(roots) == 1 else sorted(roots, key=sp.default_sort_key, reverse=True)
    return GaussForm(a, b, c, (1 - c, c - a - b, a - b))


@dataclass
class KimuraResult:
    """Kimura's theorem: the hypergeometric equation has Liouvillian solutions iff (i) one of
    λ+μ+ν, −λ+μ+ν, λ−μ+ν, λ+μ−ν is an odd integer (reducible), or (ii) ±λ, ±μ, ±ν lie, in some
    order, in a row of Schwarz's list (finite or dihedral). Otherwise its Galois group is SL2
    (after normalisation), whose identity component is not solvable."""

    case: Optional[str]      # "i", "ii", or None
    detail: str

    @property
    def liouvillian(self) -> bool:
        return self.case is not None


def kimura(lam: Union[sp.Expr, TargetLike], mu: Union[sp.Expr, TargetLike], nu: Union[sp.Expr, TargetLike]
           ) -> KimuraResult:
    """Apply Kimura's conditions to exact exponent differences (SymPy numbers or rationals)."""
    lam, mu, nu = (sp.nsimplify(x) if isinstance(x, float) else sp.sympify(x) for x in (lam, mu, nu))
    for label, total in (("λ+μ+ν", lam + mu + nu), ("−λ+μ+ν", -lam + mu + nu),
                         ("λ−μ+ν", lam - mu + nu), ("λ+μ−ν", lam + mu - nu)):
        if total.is_integer and total % 2 == 1:
            return KimuraResult("i", f"{label} = {total} is an odd integer")
    from itertools import permutations, product
    for signs in product((1, -1), repeat=3):
        values = [s * x for s, x in zip(signs, (lam, mu, nu))]
        for ordered in permutations(values):
            for row, (entries, even) in enumerate(_SCHWARZ, start=1):
                shifts = [x - r for x, r in zip(ordered, entries) if r is not None]
                if all(t.is_integer for t in shifts) and (not even or sum(shifts) % 2 == 0):
                    return KimuraResult("ii", f"(±λ, ±μ, ±ν) = {tuple(ordered)} is in row {row} of "
                                              f"Schwarz's list")
    return KimuraResult(None, "neither condition holds: the Galois group contains SL2, so its "
                              "identity component is not solvable")
