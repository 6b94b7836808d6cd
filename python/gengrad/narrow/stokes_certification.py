"""A proof in ball arithmetic that the Stokes data at ∞ of a construction's NVE (relaxation.py)
are nontrivial on rays of both kinds, which needs no Stokes multiplier at all.

The NVE dn/dz = (A₋₁/z + A₀ + A₁z) n has two singular points on the sphere, 0 (a simple pole)
and ∞ (rank 2), so a loop around one is a loop around the other. Read at ∞ in the formal basis
(irregular.py; stokes.py's conventions) it is e^{2πiR} S₃S₂S₁S₀, with e^{2πiR} = diag(a, b),
a = e^{2πiρ₁}, b = e^{2πiρ₂} (the formal exponents) and the Stokes matrices lower unipotent on
the even rays, upper on the odd ones; at 0 its eigenvalues are e^{2πiσ_j}, σ_j the eigenvalues
of A₋₁ (also when they are resonant). With p_k = c_k c_{k+1} the traces give

    e^{2πiσ₁} + e^{2πiσ₂} − a − b = a (p₀ + p₂ + p₃ + p₀p₂) + b p₁.

If every p_k vanished, the multipliers of one parity would all vanish, the product would be
triangular and unipotent and the right side 0. So a ball of the left side that excludes 0
proves some p_k ≠ 0: a nontrivial Stokes matrix on an even ray and one on an odd ray; their
Zariski closures, the full lower and upper unipotent groups, lie in the differential Galois
group G (Ramis) and generate SL2, so G⁰ ⊇ SL2 is not solvable: stokes_verdict's "not solvable",
proved. The left side needs only the exact coefficients: the NVE's entries are SymPy
expressions in the germ σ₀, σ₁, σ₂ of σ at u₀, evaluated here in balls (u₀ = 0, or u* enclosed
by a sign change of σ' in arb). A control whose NVE splits has exactly 0 there and is "not
certified"; so is any NVE whose Stokes data vanish on one parity. The multipliers themselves
stay numerical (stokes.py).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Union

import sympy as sp

from .certification import _determinant, _excludes_zero, _inverse, _product, _trace, load_flint
from .relaxation import SIGMA0, SIGMA1, SIGMA2, Relaxation, U, Z, activation_expression, relaxation_model


@dataclass
class StokesCertificate:
    """``verdict``: "certified" or "not certified"; ``reason`` names the inequality that failed;
    ``witnesses`` maps each proved inequality to its label and ball; ``germ``: the balls of u₀,
    σ₀, σ₁, σ₂."""

    activation: str
    control: bool
    bits: int
    verdict: str
    reason: str
    germ: dict[str, Any] = field(default_factory=dict)
    witnesses: dict[str, tuple[str, Any]] = field(default_factory=dict)
    seconds: float = 0.0


def ball_value(flint: Any, expression: sp.Expr, values: dict[sp.Symbol, Any]) -> Any:
    """An acb ball containing ``expression`` (rationals, the symbols in ``values`` (balls), +, ×,
    integer and half-integer powers, exp, log, erf, π); ArithmeticError for anything else (a
    floating-point number would not be exact)."""
    acb = flint.acb

    def walk(e: sp.Expr) -> Any:
        if isinstance(e, sp.Symbol):
            if e not in values:
                raise ArithmeticError(f"no ball for the symbol {e}")
            return values[e]
        if isinstance(e, sp.Rational):
            return acb(flint.arb(flint.fmpq(int(e.p), int(e.q))))
        if e is sp.pi:
            return acb(flint.arb.pi())
        if e is sp.E:
            return acb(1).exp()
        args = [walk(a) for a in e.args]
        if isinstance(e, sp.Add):
            total = args[0]
            for a in args[1:]:
                total = total + a
            return total
        if isinstance(e, sp.Mul):
            product = args[0]
            for a in args[1:]:
                product = product * a
            return product
        if isinstance(e, sp.Pow):
            exponent = e.args[1]
            if exponent.is_Integer:
                return args[0] ** int(exponent)
            if exponent.is_Rational and exponent.q == 2:
                return args[0].sqrt() ** int(exponent.p)
        functions: dict[type, Callable[[Any], Any]] = {sp.exp: lambda x: x.exp(), sp.log: lambda x: x.log(),
                                                       sp.erf: lambda x: x.erf()}
        for kind, function in functions.items():
            if isinstance(e, kind):
                return function(args[0])
        raise ArithmeticError(f"cannot enclose {sp.srepr(e)[:60]} in a ball")

    return walk(sp.sympify(expression))


def _germ_balls(flint: Any, r: Relaxation) -> dict[str, Any]:
    """u₀ and σ, σ', σ'' there as balls. The critical point u* is enclosed between two points
    where the ball of σ' has opposite signs (a root by continuity; the construction holds at
    any root of σ', so uniqueness is not needed)."""
    sigma = activation_expression(r.activation, U)
    derivatives = [sp.diff(sigma, U, k) for k in range(3)]
    if r.construction == "critical":
        def slope(u: Any, k: int = 1) -> Any:
            return ball_value(flint, derivatives[k], {U: flint.acb(u)}).real

        middle = flint.arb(float(r.germ.point))
        for _ in range(12):  # Newton on σ' from relaxation.germ's estimate, to the working precision
            middle = (middle - slope(middle) / slope(middle, 2)).mid()
        half_width = flint.arb(2) ** (-(flint.ctx.prec - 24))
        ends = [middle - half_width, middle + half_width]
        signs = [slope(end.mid()) for end in ends]
        if not ((signs[0] < 0 and signs[1] > 0) or (signs[0] > 0 and signs[1] < 0)):
            raise ArithmeticError("σ' does not provably change sign around the critical point estimate")
        point = flint.acb(flint.arb(middle.mid(), half_width * 2))
    else:
        point = flint.acb(0)
    values = {"u0": point}
    for name, derivative in zip(("sigma0", "sigma1", "sigma2"), derivatives):
        values[name] = ball_value(flint, derivative, {U: point})
    if r.construction == "critical":
        # σ'(u*) = 0 by the choice of u* (the derivation substituted it; this is for the report,
        # which would otherwise show a ball around 0)
        values["sigma1"] = flint.acb(0)
    return values


def _coefficient_balls(flint: Any, r: Relaxation, germ: dict[str, Any]) -> list[list[list[Any]]]:
    """A₋₁, A₀, A₁ of A(z) = −J/(κz) as 2x2 lists of balls, from the exact SymPy entries."""
    values = {SIGMA0: germ["sigma0"], SIGMA1: germ["sigma1"], SIGMA2: germ["sigma2"]}
    A = -r.jacobian / (r.kappa * Z)
    matrices: list[list[list[Any]]] = [[[None, None], [None, None]] for _ in range(3)]
    for i in range(2):
        for j in range(2):
            numerator, denominator = sp.fraction(sp.cancel(sp.together(A[i, j] * Z)))
            try:
                polynomial = sp.Poly(sp.expand(numerator), Z)
            except sp.PolynomialError:   # not rational in z (a hand-made Relaxation)
                polynomial = None
            if polynomial is None or Z in denominator.free_symbols or polynomial.degree() > 2:
                raise ArithmeticError("the NVE is not of the form A₋₁/z + A₀ + A₁z")
            scale = ball_value(flint, denominator, values)
            for k in range(3):
                matrices[k][i][j] = ball_value(flint, polynomial.coeff_monomial(Z ** k), values) / scale
    return matrices


def trace_gap(flint: Any, coefficients: list[list[list[Any]]]) -> tuple[str, Any, dict[str, tuple[str, Any]]]:
    """For balls [A₋₁, A₀, A₁]: ("", the ball of e^{2πiσ₁} + e^{2πiσ₂} − e^{2πiρ₁} − e^{2πiρ₂},
    the witnesses of its preconditions), or (the precondition that failed, None, ...)."""
    residue, A0, A1 = coefficients
    witnesses: dict[str, tuple[str, Any]] = {}
    two_pi_i = flint.acb(0, 2) * flint.arb.pi()
    trace1 = _trace(A1)
    root = (trace1 * trace1 - 4 * _determinant(A1)).sqrt()
    if not _excludes_zero(flint, root):
        return "the eigenvalues of A₁ are not provably distinct (rank 2 with distinct λ)", None, witnesses
    witnesses["rank 2, distinct λ"] = ("λ₁ − λ₂", root)
    lam = [(trace1 + root) / 2, (trace1 - root) / 2]
    # eigenvectors (A₁ − λ)v = 0 from whichever row of A₁ − λ provably is not zero
    vectors = []
    for value in lam:
        first, second = [A1[0][0] - value, A1[0][1]], [A1[1][0], A1[1][1] - value]
        row = first if _excludes_zero(flint, first[0]) or _excludes_zero(flint, first[1]) else second
        vectors.append([row[1], -row[0]])
    V = [[vectors[0][0], vectors[1][0]], [vectors[0][1], vectors[1][1]]]
    if not _excludes_zero(flint, _determinant(V)):
        return "no eigenvector basis of A₁ was proved", None, witnesses
    inverse = _inverse(V)
    B_residue, B0 = (_product(_product(inverse, M), V) for M in (residue, A0))
    rho = [B_residue[j][j] + B0[j][1 - j] * B0[1 - j][j] / (lam[j] - lam[1 - j]) for j in range(2)]
    formal = (two_pi_i * rho[0]).exp() + (two_pi_i * rho[1]).exp()
    # e^{2πiσ₁} + e^{2πiσ₂} = tr exp(2πi A₋₁), with no branch of a square root to choose
    loop_at_zero = (flint.acb_mat(residue) * two_pi_i).exp()
    return "", loop_at_zero[0, 0] + loop_at_zero[1, 1] - formal, witnesses


def certify_stokes(model: Union[str, Relaxation], bits: int = 128) -> StokesCertificate:
    """Prove that the Stokes data at ∞ of the construction's NVE are nontrivial on rays of both
    kinds ("certified": G⁰ ⊇ SL2), or say which inequality the balls did not prove. ``model``:
    an activation of relaxation.CONSTRUCTIONS or a Relaxation (relaxation_model(..., control));
    ``bits``: the working precision of the balls."""
    if isinstance(model, str):
        model = relaxation_model(model)
    if not isinstance(model, Relaxation):
        raise TypeError(f"model must be an activation name or a Relaxation, got {type(model).__name__}")
    if isinstance(bits, bool) or not isinstance(bits, int) or not 32 <= bits <= 4096:
        raise ValueError(f"bits must be an integer from 32 to 4096, got {bits!r}")
    flint = load_flint()
    start = time.perf_counter()
    certificate = StokesCertificate(model.activation, model.control, bits, "not certified", "")
    saved = flint.ctx.prec
    flint.ctx.prec = bits
    try:
        residuals = [*model.normal_on_plane, *model.curve_residual]
        if any(sp.simplify(residual) != 0 for residual in residuals):
            raise ArithmeticError("the construction's plane or curve does not solve the flow exactly (its residuals "
                                  "are not 0): the NVE would be about another curve")
        certificate.germ = _germ_balls(flint, model)
        failed, gap, certificate.witnesses = trace_gap(flint, _coefficient_balls(flint, model, certificate.germ))
        if failed:
            certificate.reason = failed
        elif _excludes_zero(flint, gap):
            certificate.verdict = "certified"
            certificate.witnesses["Stokes data on both parities"] = ("tr M₀ − tr e^{2πiR}", gap)
        else:
            certificate.reason = (f"the ball of tr M₀ − tr e^{{2πiR}}, {gap.str(5)}, contains 0: the trace "
                                  f"identity cannot tell whether the Stokes data vanish on one parity")
    except ArithmeticError as error:
        certificate.reason = str(error)
    finally:
        flint.ctx.prec = saved
    certificate.seconds = time.perf_counter() - start
    return certificate


def _shown(ball: Any) -> str:
    """A ball's midpoint and its radius (arb's own display rounds the radius up to the digits shown)."""
    radius = max(float(ball.real.rad()), float(ball.imag.rad()))
    return f"{ball.mid().str(15, radius=False)} ± {radius:.1e}"


def report_stokes_certificate(certificate: StokesCertificate, out: Any = print) -> None:
    """Print a Stokes certificate: the germ's balls, the witnesses and the verdict."""
    what = f"{certificate.activation}{' (control)' if certificate.control else ''}"
    out(f"Stokes data at ∞ for {what} in ball arithmetic ({certificate.bits} bits, "
        f"{certificate.seconds:.2f} s):")
    for name, ball in certificate.germ.items():
        out(f"   {name} = {_shown(ball)}")
    for name, (label, ball) in certificate.witnesses.items():
        out(f"   {name}: {label} = {_shown(ball)}")
    if certificate.verdict == "certified":
        out("   verdict: certified. The ball excludes 0, so some product c_k c_{k+1} of neighbouring Stokes")
        out("   multipliers is not 0: nontrivial Stokes matrices on an even and an odd ray put the lower and")
        out("   upper unipotent groups, hence SL2, in the NVE's Galois group: G⁰ is not solvable. A")
        out("   computer-assisted proof, given SymPy's exact derivation and the theorems cited in docs/narrow.md.")
        out("   The multipliers' values themselves stay numerical (gengrad narrow without --certify).")
    else:
        out(f"   verdict: not certified: {certificate.reason}")
