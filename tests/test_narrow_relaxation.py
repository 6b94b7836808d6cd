"""gengrad.narrow for analytic activations that are not odd: the relaxation constructions, their
normal variational equations against gengrad, and the Stokes data at the irregular point."""
import dataclasses
import io
from contextlib import redirect_stdout

import numpy as np
import pytest

sp = pytest.importorskip("sympy")
mpmath = pytest.importorskip("mpmath")
pytest.importorskip("scipy")

import gengrad  # noqa: E402
from gengrad import narrow  # noqa: E402
from gengrad.cli import main  # noqa: E402
from gengrad.narrow import relaxation, stokes  # noqa: E402

ACTIVATIONS = tuple(narrow.CONSTRUCTIONS)


@pytest.fixture(scope="module")
def analyses():
    return {(a, control): narrow.analyse_relaxation(a, control) for a in ACTIVATIONS for control in (False, True)}


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_germ_is_gengrads_activation_at_the_plane(activation):
    construction = narrow.CONSTRUCTIONS[activation]
    g = narrow.germ(activation, construction)
    if construction == "critical":
        assert float(g.point) < 0 and abs(g.slope) < 1e-35 and abs(g.curvature) > 0.1
    else:
        assert g.point == 0 and abs(g.value) > 0.1
    net = gengrad.Network((1, 1, 1), activation=activation)
    out = net.forward(np.array([0.0, float(g.point), 1.0, 0.0]), np.zeros((1, 1)))
    assert abs(float(out[0, 0]) - float(g.value)) <= 1e-15


@pytest.mark.parametrize("control", (False, True))
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_plane_is_invariant_and_curve_solves_the_flow_exactly(analyses, activation, control):
    r = analyses[activation, control].relaxation
    assert r.normal_on_plane == [0, 0]
    assert r.curve_residual == [0, 0, 0, 0]
    assert all(sp.Poly(r.curve[p], relaxation.Z).degree() <= 1 for p in r.params)


@pytest.mark.parametrize("control", (False, True))
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_nve_and_curve_against_gengrads_gradient(analyses, activation, control):
    check = analyses[activation, control].check
    assert check.field <= 1e-12
    assert check.normal_jacobian <= 1e-9
    assert check.flow <= 1e-9


def test_the_comparison_with_gengrad_detects_a_wrong_nve_and_a_wrong_curve(analyses):
    r = analyses["softplus", False].relaxation
    wrong_field = dataclasses.replace(r, jacobian=r.jacobian.T * sp.Rational(101, 100))
    assert narrow.check_relaxation(wrong_field).normal_jacobian > 1e-3
    wrong_curve = dataclasses.replace(r, kappa=r.kappa * sp.Rational(101, 100))
    check = narrow.check_relaxation(wrong_curve)
    assert check.field > 1e-3 and check.flow > 1e-4


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_stokes_multipliers_give_the_verdict_and_the_controls_come_out_abelian(analyses, activation):
    a, c = analyses[activation, False], analyses[activation, True]
    assert not a.splits and c.splits
    assert a.infinity.rank == 2 and c.infinity.rank == 2
    margins = [abs(p) / b for p, b in zip(a.stokes.products, a.stokes.product_bounds)]
    assert a.verdict == "not solvable" and min(margins) > 1e6
    assert c.verdict == "abelian" and max(abs(m) for m in c.stokes.multipliers) <= 1e-12
    # the loop around ∞ read through the Stokes data equals the loop around the regular point 0
    assert a.stokes.identity <= 1e-9 and c.stokes.identity <= 1e-9 and a.reason == c.reason == ""


def test_the_monodromy_identity_fails_for_wrong_multipliers(analyses):
    a = analyses["gelu", False]
    zeroed = dataclasses.replace(a.stokes, multipliers=(0j, 0j, 0j, 0j))
    assert stokes.monodromy_identity(a.relaxation.coefficients, zeroed) > 1e-2
    swapped = dataclasses.replace(a.stokes, multipliers=a.stokes.multipliers[1:] + a.stokes.multipliers[:1])
    assert stokes.monodromy_identity(a.relaxation.coefficients, swapped) > 1e-4


def test_a_perturbed_control_gets_nonzero_stokes_multipliers(analyses):
    """The method sees Stokes data where there are some: the control's NVE with A₀ made
    non-symmetric no longer splits."""
    coefficients = [A.copy() for A in analyses["softplus", True].relaxation.coefficients]
    coefficients[1][0, 1] += mpmath.mpf("0.01")
    data = narrow.stokes_data(coefficients)
    assert stokes.stokes_verdict(data) != "abelian"
    assert stokes.monodromy_identity(coefficients, data) <= 1e-9


def test_stokes_multipliers_are_stable_across_radius_terms_and_tolerance(analyses):
    for activation in ("sigmoid", "silu"):
        a = analyses[activation, False]
        other = narrow.stokes_data(a.relaxation.coefficients, dominance=30.0, terms=30, rtol=1e-11)
        scale = max(abs(m) for m in a.stokes.multipliers)
        assert max(abs(x - y) for x, y in zip(a.stokes.multipliers, other.multipliers)) <= 1e-8 * scale


def test_formal_solution_satisfies_the_recurrence(analyses):
    A_residue, A0, A1 = analyses["silu", False].relaxation.coefficients
    with mpmath.workdps(40):
        for j in range(2):
            f = narrow.formal_solution([A_residue, A0, A1], j, 25)
            eye = mpmath.eye(2)
            for n in range(1, 26):
                older = f.series[n - 2] if n >= 2 else mpmath.matrix(2, 1)
                residual = ((f.leading * eye - A1) * f.series[n] + (f.linear * eye - A0) * f.series[n - 1]
                            + ((f.exponent - n + 2) * eye - A_residue) * older)
                assert mpmath.norm(residual) <= mpmath.mpf(10) ** -28 * (1 + mpmath.norm(f.series[n]))


@pytest.mark.parametrize("activation", ("softplus", "gelu"))
def test_cli_runs_the_construction_end_to_end(activation):
    buffer = io.StringIO()
    with redirect_stdout(buffer):
        assert main(["narrow", "--activation", activation]) == 0
    text = buffer.getvalue()
    assert "verdict: not solvable" in text and "agrees with theory (abelian): yes" in text
    assert "FAILS" not in text and "irregular, Poincaré rank 2" in text


def test_cli_refuses_options_of_the_odd_models(capsys):
    assert main(["narrow", "--activation", "silu", "--target", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--target applies to tanh and identity only" in err


def test_a_bad_activation_is_named():
    with pytest.raises(ValueError, match="activation must be one of softplus"):
        narrow.relaxation_model("relu")


def _weber(a):
    """y'' = (z²/4 + a) y as n = (y, y'/z): dn/dz = (A₋₁/z + A₁z) n."""
    return [mpmath.matrix([[0, 0], [a, -1]]), mpmath.zeros(2, 2), mpmath.matrix([[0, 1], [0.25, 0]])]


@pytest.mark.parametrize("a", (0.3, 1.1, 20.3, -1.5, -2.5, -20.5))
def test_stokes_products_of_the_weber_equation_match_the_classical_formula(a):
    """An oracle independent of the constructions. With ν = −a − ½ the product of neighbouring
    Stokes multipliers (free of the basis' normalisation) is 2π/|Γ(−ν)Γ(ν + 1)| = 2|sin πν|;
    for integer ν ≥ 0 (Hermite functions, Liouvillian) one parity vanishes: reducible. a = 20.3
    has exponents ρ = −20.8, 19.8 and multipliers 1e-18 and 1e18 apart."""
    data = narrow.stokes_data(_weber(a))
    nu = -a - 0.5
    expected = 2 * abs(np.sin(np.pi * nu))
    for p in data.products:
        assert abs(abs(p) - expected) <= 1e-7 * max(1.0, abs(p))
    assert stokes.stokes_verdict(data) == ("reducible" if float(nu).is_integer() and nu >= 0 else "not solvable")


def test_the_verdict_does_not_depend_on_how_the_variable_is_scaled(analyses):
    """z = sζ turns A₋₁, A₀, A₁ into A₋₁, sA₀, s²A₁: the same equation, other multipliers (the
    formal basis scales), the same products and verdict."""
    A_residue, A0, A1 = analyses["softplus", False].relaxation.coefficients
    reference_products = np.array(analyses["softplus", False].stokes.products)
    for s in (0.1, 30.0, 100.0):
        data = narrow.stokes_data([A_residue, A0 * s, A1 * s * s])
        assert stokes.stokes_verdict(data) == "not solvable"
        np.testing.assert_allclose(np.abs(data.products), np.abs(reference_products), rtol=1e-7)


def test_a_poor_start_is_corrected_and_never_reads_as_abelian(analyses):
    coefficients = analyses["silu", False].relaxation.coefficients
    for dominance in (0.5, 2.0):
        assert stokes.stokes_verdict(narrow.stokes_data(coefficients, dominance=dominance)) == "not solvable"


def test_nearly_equal_exponential_factors_fail_cleanly():
    near = [mpmath.zeros(2, 2), mpmath.zeros(2, 2), mpmath.matrix([[0.02, 0.001], [0, 0.02 + 1e-6]])]
    with pytest.raises((ArithmeticError, ValueError)):
        narrow.stokes_data(near)


@pytest.mark.parametrize("call, error, words", [
    (lambda: narrow.stokes_data([np.eye(2)] * 2), TypeError, "three 2x2 matrices"),
    (lambda: narrow.stokes_data([np.eye(3)] * 3), ValueError, r"coefficients\[0\] must be 2x2"),
    (lambda: narrow.stokes_data([np.eye(2), np.eye(2), [[np.nan, 0], [0, 1]]]), ValueError, "finite"),
    (lambda: narrow.stokes_data(_weber(0.3), dominance=0), ValueError, "dominance"),
    (lambda: narrow.stokes_data(_weber(0.3), terms=2.5), ValueError, "terms"),
    (lambda: narrow.stokes_data(_weber(0.3), rtol=1.0), ValueError, "rtol"),
    (lambda: narrow.formal_solution(_weber(0.3), 2, 10), ValueError, "j must be 0 or 1"),
    (lambda: narrow.formal_solution(_weber(0.3), 0, -1), ValueError, "terms"),
    (lambda: narrow.relaxation_model("silu", control="no"), TypeError, "control must be True or False"),
    (lambda: narrow.report_relaxation("silu", out=None), TypeError, "out must be a function"),
])
def test_bad_arguments_are_named(call, error, words):
    with pytest.raises(error, match=words):
        call()


def test_numpy_coefficients_are_accepted():
    data = narrow.stokes_data([np.array([[0.0, 0.0], [0.3, -1.0]]), np.zeros((2, 2)), [[0, 1], [0.25, 0]]])
    assert stokes.stokes_verdict(data) == "not solvable"
