"""gengrad.narrow.certify: the odd models' monodromy in ball arithmetic, and a verdict proved
by the balls (python-flint)."""
import io
from contextlib import redirect_stdout

import pytest

pytest.importorskip("sympy")
mpmath = pytest.importorskip("mpmath")
flint = pytest.importorskip("flint")

from gengrad import narrow  # noqa: E402
from gengrad.cli import main  # noqa: E402


@pytest.fixture(scope="module")
def main_model():
    return narrow.derive(narrow.model("biased", "tanh"))


@pytest.fixture(scope="module")
def certificates(main_model):
    return {bits: narrow.certify(main_model, bits=bits) for bits in (64, 128)}


def _ball(value):
    return flint.acb(flint.arb(mpmath.nstr(value.real, 60)), flint.arb(mpmath.nstr(value.imag, 60)))


@pytest.mark.parametrize("bits, digits", [(64, 30), (128, 45)])
def test_every_ball_contains_the_fixed_point_monodromy(main_model, certificates, bits, digits):
    """The balls against the fixed-point continuation of continuation.py, at more digits than
    the balls resolve (30 for the 64-bit balls, widest radius 1.6e-6; 45 for the 128-bit ones,
    8.9e-26). The conversion of the reference keeps 60 digits: enough up to about 192 bits."""
    reference = narrow.monodromy(main_model, digits=digits)
    certificate = certificates[bits]
    saved = flint.ctx.prec
    flint.ctx.prec = 256   # the reference values as balls of their own, not rounded to doubles
    try:
        assert len(certificate.loops) == len(reference.loops)
        for ball_loop, loop in zip(certificate.loops, reference.loops):
            assert ball_loop.point.location == loop.point.location
            for i in range(2):
                for j in range(2):
                    assert ball_loop.matrix[i][j].contains(_ball(loop.matrix[i, j])), loop.point.location
    finally:
        flint.ctx.prec = saved


def test_radii_shrink_as_the_precision_rises(certificates):
    low = max(loop.radius for loop in certificates[64].loops)
    high = max(loop.radius for loop in certificates[128].loops)
    assert high < 1e-20 and high < 1e-15 * low


def test_the_main_model_is_certified_with_three_witnesses(certificates):
    for certificate in certificates.values():
        assert certificate.verdict == "certified" and certificate.reason == ""
        assert set(certificate.witnesses) == {"irreducible", "infinite", "primitive"}
        label, ball = certificate.witnesses["infinite"]
        assert abs(ball.imag).lower() > 0 or abs(ball.real).lower() > 2


@pytest.mark.parametrize("architecture, activation, target", [("biased", "identity", "1/2"),
                                                              ("bias_free", "tanh", "1")])
def test_reducible_and_abelian_equations_are_not_certified(architecture, activation, target):
    """Kimura's reducible linear case and the decoupled bias-free network: the balls must not
    prove what is false, and the report names the inequality that failed."""
    certificate = narrow.certify(narrow.derive(narrow.model(architecture, activation, target)), bits=64)
    assert certificate.verdict == "not certified"
    assert "commutator" in certificate.reason and "irreducible" not in certificate.witnesses


def test_the_linear_network_is_certified_as_kimura_predicts():
    certificate = narrow.certify(narrow.derive(narrow.model("biased", "identity", "1")), bits=64)
    assert certificate.verdict == "certified"


def test_bad_arguments_are_named(main_model):
    with pytest.raises(TypeError, match="derivation must be a Derivation"):
        narrow.certify("tanh")
    with pytest.raises(ValueError, match="bits must be an integer from 32 to 2048"):
        narrow.certify(main_model, bits=8)
    with pytest.raises(ValueError, match="ratio"):
        narrow.certify(main_model, ratio=0.9)


def test_command_certifies_the_odd_models(capsys):
    buffer = io.StringIO()
    with redirect_stdout(buffer):
        assert main(["narrow", "--certify", "--bits", "64"]) == 0
    assert "verdict: certified" in buffer.getvalue()
    with redirect_stdout(io.StringIO()):
        assert main(["narrow", "--certify", "--activation", "identity", "--target", "1/2", "--bits", "64"]) == 1
    assert main(["narrow", "--certify", "--activation", "gelu", "--target", "1"]) == 2
    assert "--target applies to tanh and identity only" in capsys.readouterr().err


def test_every_steps_tail_bound_exceeds_its_actual_remainder(main_model):
    """The containment tests cannot see an undersized tail (the balls are wider than the
    errors), so the bound is held to the remainder itself: 300 more terms of every step of the
    first lasso and of the loop around everything, summed, against the bound."""
    from gengrad.narrow import certification, continuation

    saved = flint.ctx.prec
    flint.ctx.prec = 128 + 32
    try:
        balls = certification._Balls(flint, main_model, 128)
        paths = continuation.lasso_paths(main_model)
        where = [p.location for p in main_model.singular_points]
        checked = 0
        for lasso in (paths.lassos[0], paths.around_all):
            Y = [[flint.acb(1), flint.acb(0)], [flint.acb(0), flint.acb(1)]]
            for z, nxt in continuation.steps_along(lasso.ray + lasso.polygon[1:], where, 0.5):
                _, tail, remainder = balls.series(Y, z, nxt, extra=300)
                assert remainder <= float(tail), (z, nxt)
                Y = balls.step(Y, z, nxt)
                checked += 1
        assert checked > 30
    finally:
        flint.ctx.prec = saved
