"""gengrad.narrow: Park 2024's four-parameter network with odd σ, step by step (docs/narrow.md)."""
import dataclasses
import io
from contextlib import redirect_stdout
from fractions import Fraction

import numpy as np
import pytest

sp = pytest.importorskip("sympy")
mpmath = pytest.importorskip("mpmath")
pytest.importorskip("scipy")

import gengrad  # noqa: E402
from gengrad import narrow  # noqa: E402
from gengrad.cli import main  # noqa: E402

S = narrow.S
MODELS = [(a, act) for a in narrow.ARCHITECTURES for act in narrow.ACTIVATIONS]


@pytest.fixture(scope="module")
def derivations():
    return {(a, act): narrow.derive(narrow.model(a, act)) for a, act in MODELS}


@pytest.fixture(scope="module")
def main_monodromy(derivations):
    """The biased tanh network's NVE, 30-digit fixed point against double precision."""
    return narrow.monodromy(derivations["biased", "tanh"], digits=30)


# --- the model and its vector field --------------------------------------------------------------

@pytest.mark.parametrize("arch, act", MODELS)
def test_vector_field_equals_minus_gengrads_gradient(derivations, arch, act):
    d = derivations[arch, act]
    assert narrow.check_against_gengrad(d, seed=1, count=24) <= 1e-12
    on_curve = np.array([np.array(sp.lambdify(S, d.theta_of_s)(s), dtype=float)
                         for s in ((1.3, 2.2) if act == "tanh" else (0.3, 0.8))])
    assert narrow.check_against_gengrad(d, thetas=on_curve) <= 1e-12


def test_gengrad_comparison_detects_a_wrong_field(derivations):
    tanh, linear = derivations["biased", "tanh"], derivations["biased", "identity"]
    wrong = dataclasses.replace(tanh, vector_field=linear.vector_field)
    assert narrow.check_against_gengrad(wrong) > 1e-2


def test_model_layout_and_normalisation():
    m = narrow.model("bias_free", "tanh", "3/7")
    assert m.widths == (1, 2, 1) and m.gengrad_indices == (0, 1, 4, 5)
    assert m.data == ((1, -1), (Fraction(3, 7), Fraction(-3, 7)))
    w, b, v, c = narrow.model().params
    risk = narrow.derive(narrow.model("biased", "identity")).risk
    # L = ½ Σ (f − y)² at θ = (1, 0, 1, 0): f(±1) = ±1 = y, so L = 0; at θ = 0 it is ½ (1 + 1).
    assert risk.subs({w: 1, b: 0, v: 1, c: 0}) == 0 and risk.subs({w: 0, b: 0, v: 0, c: 0}) == 1


# --- invariant plane, first integral, particular solution -----------------------------------------

@pytest.mark.parametrize("arch, act", MODELS)
def test_plane_is_invariant_and_J_is_conserved_on_it(derivations, arch, act):
    d = derivations[arch, act]
    assert d.normal_field_on_plane == (0, 0)
    assert d.first_integral_rate == 0


@pytest.mark.parametrize("arch, act", MODELS)
def test_particular_solution_solves_the_flow_symbolically(derivations, arch, act):
    d = derivations[arch, act]
    assert d.flow_residual == (0, 0, 0, 0)
    assert d.time_law_residual == 0


@pytest.mark.parametrize("arch, act", MODELS)
def test_variational_equation_is_block_triangular_with_a_known_tangential_solution(derivations, arch, act):
    d = derivations[arch, act]
    assert d.lower_left == sp.zeros(2, 2)
    assert d.tangential_residual == (0, 0)


def test_residual_is_nonzero_off_the_curve(derivations):
    """The substitution test can fail: v = 2 sinh w is no solution."""
    d = derivations["biased", "tanh"]
    m = d.model
    wrong = (sp.log(S), 0, 2 * sp.sinh(sp.log(S)), 0)
    residual = [narrow.derivation._in_s(m, f.subs(dict(zip(m.params, wrong))) - sp.diff(t, S) * d.speed)
                for f, t in zip(d.vector_field, wrong)]
    assert any(sp.cancel(r) != 0 for r in residual)


@pytest.mark.parametrize("arch, act", MODELS)
def test_particular_solution_matches_dop853(derivations, arch, act):
    check = narrow.check_flow(derivations[arch, act])
    assert check.off_curve <= 1e-10
    assert check.time_law <= 1e-10
    assert check.first_integral <= 1e-10
    assert check.loss_end < 1e-2 * check.loss_start


def test_flow_check_at_a_fast_target_and_with_a_wrong_time_law(derivations):
    # y* = 5 reaches the equilibrium to rounding before t = 2, where T(s) is singular
    assert narrow.check_flow(narrow.derive(narrow.model("biased", "identity", 5))).time_law <= 1e-10
    d = derivations["biased", "tanh"]
    assert narrow.check_flow(dataclasses.replace(d, time_law=2 * d.time_law)).time_law > 1e-3


# --- the normal variational equation ---------------------------------------------------------------

def test_nve_of_the_linear_network_is_the_hand_derived_one(derivations):
    # On Γ: v = w, ẇ = 2w(1 − w²), δb' = −2v(v δb + δc), δc' = −2(v δb + δc).
    A = derivations["biased", "identity"].nve
    expected = sp.Matrix([[S / (S**2 - 1), 1 / (S**2 - 1)], [1 / (S**2 - 1), 1 / (S * (S**2 - 1))]])
    assert (A - expected).applyfunc(sp.cancel) == sp.zeros(2, 2)


@pytest.mark.parametrize("arch, act", MODELS)
def test_nve_matches_finite_differences_of_gengrads_gradient(derivations, arch, act):
    """A(s) ds/dt is the normal block of the Jacobian of F = −G at θ(s): fourth-order central
    differences of gengrad's own generalized gradient in the normal directions, independently
    of the symbolic Jacobian."""
    d = derivations[arch, act]
    m = d.model
    net = gengrad.Network(m.widths, activation=m.activation)
    xs, ys = m.data
    X = np.array(xs, dtype=float).reshape(-1, 1)
    Y = np.array([float(y) for y in ys]).reshape(-1, 1)
    indices = list(m.gengrad_indices)

    def field(theta):
        full = np.zeros(net.dim)
        full[indices] = theta
        return -net.gradient(full, X, Y, sample_weight=np.array(m.sample_weight))[indices]

    theta_of_s = sp.lambdify(S, d.theta_of_s, "numpy")
    C = np.array(narrow.derivation.plane_coordinates(m), dtype=float)
    normal = np.linalg.inv(C)[:, 2:]
    h = 1e-3
    for s in (1.2, 1.7) if act == "tanh" else (0.35, 0.6):
        theta = np.array(theta_of_s(s), dtype=float)
        J = np.column_stack([C[2:] @ (field(theta - 2 * h * e) - 8 * field(theta - h * e) + 8 * field(theta + h * e)
                                      - field(theta + 2 * h * e)) / (12 * h) for e in normal.T])
        A = np.array(d.nve.subs(S, s), dtype=float) * float(d.speed.subs(S, s))
        assert np.abs(J - A).max() <= 1e-9 * max(1, np.abs(A).max())


def test_singular_points_and_exponents_of_the_main_nve(derivations):
    d = derivations["biased", "tanh"]
    assert d.fuchsian
    quartic = S**4 - 2 * S**3 - 2 * S**2 - 2 * S + 1          # zero loss: sinh(w) tanh(w) = 1
    assert sp.factor(d.denominator.as_expr()) == sp.factor(S * (S - 1) * (S + 1) * (S**2 + 1) * quartic)
    exact = narrow.exponent_polynomials(d)
    x = sp.Symbol("x")
    assert exact[quartic] == sorted([x, x**2 - 2 * x + sp.Rational(4, 5)], key=sp.default_sort_key)
    assert exact[S - 1] == [x, x + 1]
    # numerically: exponents 0 and 1 ± 1/√5 at the zero-loss points, Fuchs' relation Σρ = 0
    with mpmath.workdps(30):
        root5 = mpmath.sqrt(5)
        for p in d.singular_points:
            if p.factor == quartic:
                other = 1 + root5 ** -1 if abs(p.location.imag) < 1e-9 else 1 - root5 ** -1
                assert abs(p.exponents[0]) < 1e-25 and abs(p.exponents[1] - other) < 1e-25
        total = sum(sum(p.exponents) for p in d.singular_points + [d.infinity])
        assert abs(total) < 1e-25
    assert [p.on_curve for p in d.singular_points if p.location == 0] == [False]


def test_exponents_at_zero_loss_are_eigenvalue_ratios_of_the_field(derivations):
    """ρ = (normal eigenvalue) / (tangential rate) at the equilibrium Γ runs into, from the
    Jacobian of F itself (finite differences), not from the NVE."""
    d = derivations["biased", "tanh"]
    m = d.model
    s_star = max(p.location.real for p in d.singular_points if p.location.imag == 0)
    field = sp.lambdify(m.params, d.vector_field, "numpy")
    theta = np.array(sp.lambdify(S, d.theta_of_s)(s_star), dtype=float)
    h = 1e-6
    J = np.column_stack([(np.array(field(*(theta + h * e))) - np.array(field(*(theta - h * e)))) / (2 * h)
                         for e in np.eye(4)])
    normal = np.linalg.eigvals(J[np.ix_([1, 3], [1, 3])])
    rate = float(sp.diff(d.speed, S).subs(S, s_star))            # ṡ ≈ rate (s − s*)
    point = next(p for p in d.singular_points if abs(p.location - s_star) < 1e-12)
    assert sorted(normal / rate) == pytest.approx(sorted(float(mpmath.re(e)) for e in point.exponents), abs=1e-6)


# --- hypergeometric form and Kimura ---------------------------------------------------------------

@pytest.mark.parametrize("target, liouvillian", [(1, False), ("1/2", True), ("1/3", False),
                                                 ("1/4", True), (2, False), ("3/5", False)])
def test_linear_network_nve_is_gauss_hypergeometric(target, liouvillian):
    d = narrow.derive(narrow.model("biased", "identity", target))
    g = narrow.gauss_form(d)
    y = sp.Rational(Fraction(target).numerator, Fraction(target).denominator)
    assert (g.a, g.b, g.c) == (sp.Rational(1, 2), -sp.Rational(1, 2), (1 + y) / (2 * y))
    # Liouvillian exactly when 1/(2y*) is an integer
    assert narrow.kimura(*g.exponent_differences).liouvillian is liouvillian


def test_tanh_nve_is_not_hypergeometric(derivations):
    assert narrow.gauss_form(derivations["biased", "tanh"]) is None


@pytest.mark.parametrize("lam, mu, nu, case", [
    (0, 0, 0, None),                                           # Legendre: complete elliptic integrals
    (-1, 0, 0, "i"),                                           # a = b = 1, c = 2: log(1 − z)/z
    ("1/2", "1/2", "3/7", "ii"),                               # dihedral
    ("1/2", "1/3", "1/4", "ii"),                               # octahedral
    ("2/3", "1/3", "1/3", "ii"),                               # tetrahedral, l + m + q = 0 even
    ("2/3", "1/3", "4/3", "i"),                                # odd shift sum: reducible instead
    ("1/5", "1/7", "1/3", None),
])
def test_kimura_on_textbook_cases(lam, mu, nu, case):
    assert narrow.kimura(*(sp.Rational(x) for x in (lam, mu, nu))).case == case


# --- monodromy and the group it generates ----------------------------------------------------------

def test_monodromy_satisfies_its_identities_at_30_digits(main_monodromy):
    mono = main_monodromy
    assert len(mono.loops) == 9 and len(mono.generators()) == 8
    for name, residual in mono.checks.items():
        assert residual < 1e-25, name
    with mpmath.workdps(40):
        for loop in mono.loops:
            assert mpmath.mnorm(loop.matrix - loop.coarse, 1) < 1e-11   # double precision's error


def test_monodromy_of_the_main_nve_is_not_solvable(main_monodromy):
    evidence = narrow.analyse_group(main_monodromy)
    assert evidence.verdict == "not solvable"
    for witness in (evidence.irreducible, evidence.infinite, evidence.primitive):
        assert witness.margin(0) > 1e6
        assert witness.bound < 1e-6


@pytest.mark.parametrize("arch, act, target, verdicts", [
    ("biased", "identity", 1, ("not solvable",)),
    ("biased", "identity", "1/2", ("reducible", "abelian")),
    ("bias_free", "tanh", 1, ("reducible", "abelian")),
    ("bias_free", "identity", 1, ("reducible", "abelian")),
])
def test_contrasts_get_the_verdict_theory_predicts(derivations, arch, act, target, verdicts):
    d = derivations[arch, act] if target == 1 else narrow.derive(narrow.model(arch, act, target))
    mono = narrow.monodromy(d, digits=None)
    assert max(mono.checks.values()) < 1e-10
    assert narrow.analyse_group(mono).verdict in verdicts


def _classify(matrices):
    rng = np.random.default_rng(0)
    coarse = [np.array(M, dtype=complex) + 1e-14 * rng.normal(size=(2, 2)) for M in matrices]
    return narrow.classify(matrices, coarse, residual=1e-16).verdict


@pytest.mark.parametrize("matrices, verdict", [
    ([np.diag([1.7, 1 / 1.7]), np.diag([2.0, 0.5])], "abelian"),
    ([[[1, 1], [0, 1]], [[2, 3], [0, 0.5]]], "reducible"),
    ([[[1, 2], [0, 1]], [[1, 0], [2, 1]]], "not solvable"),               # Sanov: free, dense in SL2
    ([np.diag([1.7, 1 / 1.7]), [[0, 1], [-1, 0]]], "undecided"),          # imprimitive: G⁰ a torus
    ([[[1j, 0], [0, -1j]], [[0, 1], [-1, 0]]], "undecided"),              # quaternion group: finite
])
def test_classify_tells_the_algebraic_subgroups_of_sl2_apart(matrices, verdict):
    assert _classify(matrices) == verdict


# --- bad input and the command ---------------------------------------------------------------------

@pytest.mark.parametrize("call, error, text", [
    (lambda: narrow.model("wide"), ValueError, "architecture"),
    (lambda: narrow.model(activation="relu"), ValueError, "activation"),
    (lambda: narrow.model(target=0), ValueError, "target"),
    (lambda: narrow.model(target=-1.5), ValueError, "target"),
    (lambda: narrow.model(target=[1]), TypeError, "target"),
    (lambda: narrow.model(target=True), TypeError, "target"),
    (lambda: narrow.model(target="a/b"), TypeError, "target"),
    (lambda: narrow.derive("biased"), TypeError, "Model"),
    (lambda: narrow.monodromy("x"), TypeError, "derivation"),
    (lambda: narrow.analyse_group(None), TypeError, "Monodromy"),
    (lambda: narrow.classify([np.eye(3)], [np.eye(3)]), ValueError, "2x2"),
    (lambda: narrow.classify([np.zeros((2, 2))], [np.zeros((2, 2))]), ValueError, "singular"),
    (lambda: narrow.classify([np.eye(2)], []), ValueError, "as many"),
])
def test_bad_input_is_named(call, error, text):
    with pytest.raises(error, match=text):
        call()


def test_bad_monodromy_settings(derivations):
    d = derivations["bias_free", "identity"]
    for kwargs, text in (({"digits": 5}, "digits"), ({"digits": 30.0}, "digits"),
                         ({"corners": 2}, "corners"), ({"ratio": 0.9}, "ratio")):
        with pytest.raises(ValueError, match=text):
            narrow.monodromy(d, **kwargs)
    with pytest.raises(ValueError, match="thetas"):
        narrow.check_against_gengrad(d, thetas=np.zeros((3, 5)))


def test_command_prints_each_step_and_the_verdict():
    buffer = io.StringIO()
    with redirect_stdout(buffer):
        assert main(["narrow", "--digits", "0", "--no-contrasts"]) == 0
    text = buffer.getvalue()
    for step in ("1. vector field", "2. invariant plane", "3. particular solution",
                 "4. variational equation", "normal variational equation (NVE)", "5. monodromy",
                 "verdict: not solvable",
                 "not a proof"):
        assert step in text


def test_command_refuses_bad_arguments(capsys):
    assert main(["narrow", "--target", "-1", "--no-contrasts"]) == 2
    assert "target" in capsys.readouterr().err


def test_the_invariant_plane_is_fixed_by_the_involution_that_flips_b_and_c():
    """(w, b, v, c) -> (w, -b, v, -c) maps f to x -> -f(-x): with odd tanh and the odd data it
    leaves the risk unchanged, so its fixed plane {b = c = 0} is invariant under the flow."""
    m = narrow.model("biased", "tanh", 1)
    net = gengrad.Network(m.widths, "tanh")
    (x1, x2), (y1, y2) = m.data
    X, Y = np.array([[x1], [x2]], float), np.array([[float(y1)], [float(y2)]])
    for theta in np.random.default_rng(0).normal(size=(20, 4)):
        flipped = theta * np.array([1, -1, 1, -1])
        assert net.risk(flipped, X, Y) == pytest.approx(net.risk(theta, X, Y), rel=1e-14)
        G, G_flipped = net.gradient(theta, X, Y), net.gradient(flipped, X, Y)
        np.testing.assert_allclose(G_flipped, G * np.array([1, -1, 1, -1]), rtol=1e-12, atol=1e-15)


def test_a_contrast_with_one_loop_is_called_vacuous(capsys):
    buffer = io.StringIO()
    with redirect_stdout(buffer):
        assert main(["narrow", "--digits", "0"]) == 0
    line = next(line for line in buffer.getvalue().splitlines() if line.strip().startswith("bias_free, identity"))
    assert "vacuous: one loop cannot fail" in line


def test_without_an_obstruction_an_irregular_point_is_no_evidence(monkeypatch):
    """Where the NVE has an irregular singular point, monodromy does not see the Stokes part of
    the Galois group: commuting loops must not read as a sign of integrability."""
    derive = narrow.derive
    monkeypatch.setattr(narrow.pipeline, "derive", lambda m: dataclasses.replace(derive(m), fuchsian=False))
    lines = []
    narrow.report("bias_free", "tanh", 1, digits=None, contrasts=False, out=lines.append)
    text = "\n".join(lines)
    assert "no obstruction found" in text and "irregular singular point" in text
    assert "is no evidence for integrability" in text


def test_abelian_verdict_rests_on_a_centrality_check():
    """Γ (s = e^w) is a cover of the punctured s-plane: its loops are the lassos conjugated by
    powers of the loop around s = 0, so "abelian" needs M(0) to commute with every lasso."""
    group = narrow.analyse_group(narrow.monodromy(narrow.derive(narrow.model("bias_free", "tanh")), digits=None))
    assert group.verdict == "abelian" and group.central is not None and not group.central.differs_from(0)


def test_a_non_central_off_curve_loop_brings_its_conjugates_in():
    """Commuting lassos with a loop off Γ that does not commute with them: the conjugates
    join the generators and the verdict is no longer "abelian"."""
    d = narrow.derive(narrow.model("bias_free", "tanh"))
    mono = narrow.monodromy(d, digits=None)
    off = next(loop for loop in mono.loops if not loop.point.on_curve)
    twist = mpmath.matrix([[1, 0.3], [0.2, 1.06]])
    twisted = dataclasses.replace(off, matrix=off.matrix * twist, coarse=off.coarse * twist)
    loops = [twisted if loop is off else loop for loop in mono.loops]
    group = narrow.analyse_group(dataclasses.replace(mono, loops=loops))
    assert group.central is not None and group.central.differs_from(0) and group.verdict != "abelian"
