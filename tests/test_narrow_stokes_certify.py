"""gengrad.narrow.certify_stokes: the trace identity of the Stokes data at ∞, in ball arithmetic,
for the constructions of the activations that are not odd (python-flint)."""
import dataclasses
import io
from contextlib import redirect_stdout

import numpy as np
import pytest

sp = pytest.importorskip("sympy")
mpmath = pytest.importorskip("mpmath")
flint = pytest.importorskip("flint")

from gengrad import narrow  # noqa: E402
from gengrad.cli import main  # noqa: E402
from gengrad.narrow.relaxation import Z  # noqa: E402
from gengrad.narrow.stokes_certification import ball_value, trace_gap  # noqa: E402

GAP = "Stokes data on both parities"


@pytest.fixture(scope="module")
def models():
    return {(a, c): narrow.relaxation_model(a, c) for a in narrow.CONSTRUCTIONS for c in (False, True)}


def _numeric_gap(coefficients, stokes):
    """tr(e^{2πiR} S₃S₂S₁S₀) − e^{2πiρ₁} − e^{2πiρ₂} from stokes.py's integrated multipliers: the
    same quantity by way of the Stokes matrices, which the balls never see."""
    rho = [complex(x) for x in narrow.formal_invariants(coefficients).exponents]
    product = np.diag([np.exp(2j * np.pi * x) for x in rho])
    for k in (3, 2, 1, 0):
        c = stokes.multipliers[k]
        product = product @ (np.array([[1, 0], [c, 1]]) if k % 2 == 0 else np.array([[1, c], [0, 1]]))
    return np.trace(product) - sum(np.exp(2j * np.pi * x) for x in rho)


@pytest.mark.parametrize("activation", ["softplus", "silu", "gelu"])
def test_constructions_are_certified_and_the_ball_matches_the_integrated_stokes_data(models, activation):
    r = models[(activation, False)]
    certificate = narrow.certify_stokes(r)
    assert certificate.verdict == "certified", certificate.reason
    gap = certificate.witnesses[GAP][1]
    numeric = _numeric_gap(r.coefficients, narrow.stokes_data(r.coefficients))
    # |gap| is 0.013-2.8; the integrated multipliers carry bounds of ~1e-11 (docs/narrow.md)
    assert abs(complex(gap.mid()) - numeric) < 1e-9 * (1 + abs(numeric))
    assert abs(complex(gap.mid())) > 1e-3


def test_sigmoid_is_not_certified_the_identity_cancels_there(models):
    """Sigmoid's Stokes products are 0.43-0.77 (stokes.py), yet the trace identity's two sides
    cancel exactly (σ''(0) = 0): the balls cannot decide, and say so."""
    r = models[("sigmoid", False)]
    certificate = narrow.certify_stokes(r)
    assert certificate.verdict == "not certified" and "trace identity cannot tell" in certificate.reason
    assert abs(_numeric_gap(r.coefficients, narrow.stokes_data(r.coefficients))) < 1e-10


@pytest.mark.parametrize("activation", list(narrow.CONSTRUCTIONS))
def test_controls_whose_nve_splits_are_not_certified(models, activation):
    certificate = narrow.certify_stokes(models[(activation, True)])
    assert certificate.verdict == "not certified" and "contains 0" in certificate.reason


@pytest.mark.parametrize("entries, certified", [(((0, 1), (1, 0)), True), (((0, 0), (1, 0)), False)])
def test_perturbed_controls(models, entries, certified):
    """The critical control's NVE is diagonal. Adding 0.01 to both off-diagonal entries of A₀
    couples it (nontrivial Stokes data: certified); adding it to one keeps it triangular, so the
    Stokes matrices of one parity stay trivial, and the balls must not claim otherwise."""
    r = models[("gelu", True)]
    P = sp.Matrix(entries) * sp.Rational(1, 100)
    certificate = narrow.certify_stokes(dataclasses.replace(r, jacobian=r.jacobian - P * r.kappa * Z))
    assert (certificate.verdict == "certified") == certified, certificate.reason
    assert certified or "contains 0" in certificate.reason


def test_what_the_balls_cannot_prove_is_not_certified(models):
    """The guards: a critical construction whose σ' has no root (sigmoid's) fails the sign
    change that encloses u*; an NVE that is not rational in z, or a curve that does not solve
    the flow, is refused rather than certified or crashed on."""
    r = models[("silu", False)]
    no_root = narrow.certify_stokes(dataclasses.replace(r, activation="sigmoid"))
    assert no_root.verdict == "not certified" and "σ' does not provably change sign" in no_root.reason
    not_rational = narrow.certify_stokes(dataclasses.replace(r, jacobian=r.jacobian + sp.exp(Z) * sp.eye(2)))
    assert not_rational.verdict == "not certified" and "not of the form" in not_rational.reason
    off_curve = narrow.certify_stokes(dataclasses.replace(r, curve_residual=[Z, 0, 0, 0]))
    assert off_curve.verdict == "not certified" and "residuals are not 0" in off_curve.reason


def test_radii_shrink_as_the_precision_rises(models):
    radii = []
    for bits in (64, 128, 256):
        gap = narrow.certify_stokes(models[("softplus", False)], bits=bits).witnesses[GAP][1]
        radii.append(max(float(gap.real.rad()), float(gap.imag.rad())))
    assert radii[0] > 1e15 * radii[1] and radii[1] > 1e30 * radii[2]
    middles = [narrow.certify_stokes(models[("softplus", False)], bits=b).witnesses[GAP][1] for b in (64, 256)]
    assert middles[0].overlaps(middles[1])


def _weber(a):
    """y'' = (z²/4 + a) y as n = (y, y'/z): A₋₁ = [[0, 0], [a, −1]], A₀ = 0, A₁ = [[0, 1], [¼, 0]]."""
    q = flint.acb(flint.arb(flint.fmpq(*a)))
    zero, one = flint.acb(0), flint.acb(1)
    return [[[zero, zero], [q, -one]], [[zero, zero], [zero, zero]], [[zero, one], [one / 4, zero]]]


@pytest.mark.parametrize("a, liouvillian", [((3, 10), False), ((11, 10), False), ((-3, 2), True), ((-5, 2), True)])
def test_weber_equation(a, liouvillian):
    """An oracle outside the constructions: the parabolic cylinder equation has Stokes products
    2|sin πν| (ν = −a − ½), zero exactly for the Hermite cases ν = 1, 2 (Liouvillian solutions)."""
    saved = flint.ctx.prec
    flint.ctx.prec = 128
    try:
        failed, gap, _ = trace_gap(flint, _weber(a))
    finally:
        flint.ctx.prec = saved
    assert failed == ""
    assert gap.contains(0) == liouvillian


def test_exact_values_only_and_bad_arguments_are_named():
    with pytest.raises(ArithmeticError, match="cannot enclose"):
        ball_value(flint, sp.Float(0.1) + sp.Symbol("x"), {sp.Symbol("x"): flint.acb(1)})
    with pytest.raises(ValueError, match="activation must be one of"):
        narrow.certify_stokes("tanh")
    with pytest.raises(TypeError, match="model must be an activation name or a Relaxation"):
        narrow.certify_stokes(3)
    with pytest.raises(ValueError, match="bits must be an integer from 32 to 4096"):
        narrow.certify_stokes("softplus", bits=16)


def test_command_certifies_the_constructions(capsys):
    buffer = io.StringIO()
    with redirect_stdout(buffer):
        assert main(["narrow", "--activation", "silu", "--certify"]) == 0
        assert main(["narrow", "--activation", "sigmoid", "--certify", "--no-contrasts"]) == 1
    out = buffer.getvalue()
    assert out.count("verdict: certified") == 1 and out.count("verdict: not certified") == 2
    assert "silu (control)" in out
