"""Tests of the NumPy reference (gengrad.reference) against docs/math.md and its worked examples."""
import math
import zlib

import numpy as np
import pytest

from conftest import CANCELLATION_EXAMPLE, MATH6_EXAMPLE
from gengrad import activations as A
from gengrad import reference as R

KINKED = {
    "relu": A.get("relu"),
    "leaky_relu(0.1)": A.leaky_relu(0.1),
    "hardtanh": A.get("hardtanh"),
    "relu6": A.get("relu6"),
    "clip(-0.5,2)": A.clip(-0.5, 2.0),
    "abs": A.get("abs"),
}
SMOOTH = {name: A.get(name) for name in ("tanh", "sigmoid", "softplus", "gelu", "silu")}
ALL = {**KINKED, "identity": A.get("identity"), **SMOOTH}
ADMISSIBLE = ("cubic", "sine")


def central_fd(f, x, h=1e-6):
    x = np.asarray(x, dtype=np.float64)
    g = np.empty_like(x)
    for i in range(x.size):
        e = np.zeros_like(x)
        e[i] = h
        g[i] = (f(x + e) - f(x - e)) / (2 * h)
    return g


def distance_to_kinks(z, act):
    return np.min([np.abs(z - kappa) for kappa in act.kinks], axis=0)


# --- §1: layout, dimension, unflatten --------------------------------------------------------

def test_layout_dim_unflatten():
    widths = (3, 4, 2)
    assert R.dim(widths) == 4 * (3 + 1) + 2 * (4 + 1) == 26
    assert R.dim((1, 1, 1)) == 4
    assert R.dim((2, 5, 4, 1)) == 44  # docs/math.md §1
    assert R.layout(widths) == [(0, 12, 4, 3), (16, 24, 2, 4)]

    theta = np.arange(26, dtype=np.float64)
    (W1, b1), (W2, b2) = R.unflatten(theta, widths)
    np.testing.assert_array_equal(W1, np.arange(12).reshape(4, 3))
    np.testing.assert_array_equal(b1, [12, 13, 14, 15])
    np.testing.assert_array_equal(W2, np.arange(16, 24).reshape(2, 4))
    np.testing.assert_array_equal(b2, [24, 25])
    assert all(np.shares_memory(block, theta) for block in (W1, b1, W2, b2))
    flat = np.concatenate([W1.ravel(), b1, W2.ravel(), b2])
    np.testing.assert_array_equal(flat, theta)

    # the realization reads the blocks as MATH §1 says: z^1 = W_1 x + b_1, h = a(z^1), ...
    X = np.array([[1.0, -2.0, 0.5], [0.0, 1.0, -1.0]])
    zs = R.pre_activations(theta / 10, widths, A.get("relu"), X)
    (V1, c1), (V2, c2) = R.unflatten(theta / 10, widths)
    np.testing.assert_allclose(zs[0], X @ V1.T + c1, rtol=1e-15)
    np.testing.assert_allclose(zs[1], np.maximum(zs[0], 0) @ V2.T + c2, rtol=1e-15)
    np.testing.assert_array_equal(R.forward(theta / 10, widths, A.get("relu"), X), zs[1])
    assert [z.shape for z in zs] == [(2, 4), (2, 2)]


def test_layout_errors():
    with pytest.raises(ValueError):
        R.dim((3,))
    with pytest.raises(ValueError):
        R.layout((3, 0, 2))
    with pytest.raises(ValueError):
        R.unflatten(np.zeros(25), (3, 4, 2))
    with pytest.raises(ValueError):
        R.forward(np.zeros(26), (3, 4, 2), A.get("relu"), np.zeros((5, 2)))


def test_layout_matches_torch_parameters_to_vector():
    torch = pytest.importorskip("torch")
    widths = (3, 4, 5, 2)
    rng = np.random.default_rng(0)
    theta = rng.normal(size=R.dim(widths))
    layers = []
    for k, (W, b) in enumerate(R.unflatten(theta, widths)):
        lin = torch.nn.Linear(W.shape[1], W.shape[0]).double()
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(W.copy()))
            lin.bias.copy_(torch.from_numpy(b.copy()))
        layers.append(lin)
        if k < len(widths) - 2:
            layers.append(torch.nn.ReLU())
    net = torch.nn.Sequential(*layers)
    flat = torch.nn.utils.parameters_to_vector(net.parameters()).detach().numpy()
    np.testing.assert_array_equal(flat, theta)
    X = rng.normal(size=(6, 3))
    out = net(torch.from_numpy(X)).detach().numpy()
    np.testing.assert_allclose(R.forward(theta, widths, A.get("relu"), X), out, rtol=1e-12)


# --- §3: activations and generalized derivatives ---------------------------------------------

def test_activation_values():
    z = np.array([-3.0, -0.5, 0.0, 0.5, 2.0, 7.0])
    v = lambda name, act=None: R.activation_value(act or A.get(name), z)  # noqa: E731
    np.testing.assert_array_equal(v("relu"), [0, 0, 0, 0.5, 2, 7])
    np.testing.assert_allclose(R.activation_value(A.leaky_relu(0.1), z),
                               [-0.3, -0.05, 0, 0.5, 2, 7], rtol=1e-15)
    np.testing.assert_array_equal(v("hardtanh"), [-1, -0.5, 0, 0.5, 1, 1])
    np.testing.assert_array_equal(v("relu6"), [0, 0, 0, 0.5, 2, 6])
    np.testing.assert_array_equal(R.activation_value(A.clip(-0.5, 2), z),
                                  [-0.5, -0.5, 0, 0.5, 2, 2])
    np.testing.assert_array_equal(v("abs"), np.abs(z))
    np.testing.assert_array_equal(v("identity"), z)
    np.testing.assert_allclose(v("tanh"), np.tanh(z), rtol=1e-15)
    np.testing.assert_allclose(v("sigmoid"), 1 / (1 + np.exp(-z)), rtol=1e-15)
    np.testing.assert_allclose(v("softplus"), np.log1p(np.exp(z)), rtol=1e-15)
    np.testing.assert_allclose(v("silu"), z / (1 + np.exp(-z)), rtol=1e-15)
    # gelu(1) = Phi(1), gelu(-1) = -Phi(-1) with the standard normal cdf Phi
    np.testing.assert_allclose(R.activation_value(A.get("gelu"), [1.0, -1.0]),
                               [0.8413447460685429, -0.15865525393145707], rtol=1e-14)
    # stable at large |z|: no overflow, no nan
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        big = np.array([-800.0, 800.0])
        np.testing.assert_array_equal(R.activation_value(A.get("sigmoid"), big), [0.0, 1.0])
        np.testing.assert_array_equal(R.activation_value(A.get("softplus"), big), [0.0, 800.0])
        np.testing.assert_array_equal(R.activation_value(A.get("silu"), big), [-0.0, 800.0])


@pytest.mark.parametrize("name", list(KINKED) + ["identity"])
def test_piecewise_linear_formulas_agree_with_spec_objects(name):
    # the per-name formulas must describe the same function as kinks/slopes/value_at_first_kink
    act = ALL[name]
    z = np.linspace(-9, 9, 3601)
    if act.kinks:
        k0 = act.kinks[0]
        assert R.activation_value(act, k0) == act.value_at_first_kink
        from_spec = act.value_at_first_kink + act.slopes[0] * (z - k0)
        for kappa, s_left, s_right in zip(act.kinks, act.slopes, act.slopes[1:]):
            from_spec = from_spec + (s_right - s_left) * np.maximum(z - kappa, 0)
    else:
        from_spec = act.slopes[0] * z
    np.testing.assert_allclose(R.activation_value(act, z), from_spec, rtol=1e-13, atol=1e-13)
    # and the slopes between kinks
    bounds = (-np.inf,) + act.kinks + (np.inf,)
    d = R.generalized_derivative(act, z)
    for lo, hi, s in zip(bounds, bounds[1:], act.slopes):
        inside = (z > lo) & (z < hi)
        np.testing.assert_array_equal(d[inside], s)


@pytest.mark.parametrize("name", list(ALL))
def test_derivative_off_kinks_matches_fd(name):
    act = ALL[name]
    z = np.linspace(-7.3, 7.1, 577)
    if act.kinks:
        z = z[distance_to_kinks(z, act) > 1e-3]
    fd = (R.activation_value(act, z + 1e-6) - R.activation_value(act, z - 1e-6)) / 2e-6
    np.testing.assert_allclose(R.generalized_derivative(act, z), fd, rtol=0, atol=1e-8)


@pytest.mark.parametrize("name", list(KINKED))
@pytest.mark.parametrize("side", [None, "left", "right"])
def test_generalized_derivative_at_kinks_is_the_convention(name, side):
    act = ALL[name].with_convention(side)
    d = R.generalized_derivative(act, np.array(act.kinks))
    np.testing.assert_array_equal(d, act.derivative_at_kinks)
    for i, right in enumerate(act.right_sided):
        assert d[i] == act.slopes[i + 1 if right else i]


def test_default_conventions():
    gd = R.generalized_derivative
    assert gd(A.get("relu"), 0.0) == 0.0
    assert gd(A.get("relu", 1.0), 0.0) == 1.0
    assert gd(A.leaky_relu(0.1), 0.0) == 0.1
    np.testing.assert_array_equal(gd(A.get("hardtanh"), [-1.0, 1.0]), [0.0, 0.0])
    np.testing.assert_array_equal(gd(A.get("relu6"), [0.0, 6.0]), [0.0, 0.0])
    assert gd(A.get("abs"), 0.0) == 1.0
    assert gd(A.get("abs", -1.0), 0.0) == -1.0


# --- §2: losses and risk -----------------------------------------------------------------------

def test_squared_error_loss():
    Z = np.array([[1.0, 2.0], [0.0, -1.0]])
    Y = np.array([[0.0, 0.0], [1.0, 1.0]])
    np.testing.assert_array_equal(R.loss_values("squared_error", Z, Y), [5.0, 5.0])
    np.testing.assert_array_equal(R.loss_gradient("squared_error", Z, Y), 2 * (Z - Y))


def test_cross_entropy_value_gradient_and_stability():
    rng = np.random.default_rng(1)
    Z = rng.normal(size=(6, 4)) * 3
    Y = np.vstack([rng.dirichlet(np.ones(4), size=3), np.eye(4)[[0, 2]], [[0.5, 0, 2, 1]]])
    softmax = np.exp(Z) / np.sum(np.exp(Z), axis=1, keepdims=True)
    direct = -np.sum(Y * np.log(softmax), axis=1)
    np.testing.assert_allclose(R.loss_values("cross_entropy", Z, Y), direct, rtol=1e-13)
    grad = R.loss_gradient("cross_entropy", Z, Y)
    np.testing.assert_allclose(grad, softmax * Y.sum(axis=1, keepdims=True) - Y,
                               rtol=1e-13, atol=1e-15)
    fd = central_fd(lambda z: R.loss_values("cross_entropy", z.reshape(Z.shape), Y).sum(),
                    Z.ravel()).reshape(Z.shape)
    np.testing.assert_allclose(grad, fd, rtol=0, atol=1e-8)

    with np.errstate(over="raise", invalid="raise", divide="raise"):
        Zb = np.array([[1000.0, 0.0], [-1000.0, 0.0]])
        Yb = np.array([[0.0, 1.0], [1.0, 0.0]])
        np.testing.assert_array_equal(R.loss_values("cross_entropy", Zb, Yb), [1000.0, 1000.0])
        np.testing.assert_array_equal(R.loss_gradient("cross_entropy", Zb, Yb),
                                      [[1.0, -1.0], [-1.0, 1.0]])


def test_risk_weights_and_errors():
    rng = np.random.default_rng(2)
    widths, act = (2, 3, 2), A.get("tanh")
    theta, X, Y = rng.normal(size=R.dim(widths)), rng.normal(size=(5, 2)), rng.normal(size=(5, 2))
    per_sample = R.loss_values("squared_error", R.forward(theta, widths, act, X), Y)
    assert R.risk(theta, widths, act, X, Y) == pytest.approx(per_sample.mean(), rel=1e-15)
    w = rng.uniform(0.1, 2, size=5)
    assert R.risk(theta, widths, act, X, Y, sample_weight=w) == pytest.approx(
        np.sum(w * per_sample), rel=1e-15)
    for bad in (np.ones(4), -np.ones(5), np.full(5, np.inf)):
        with pytest.raises(ValueError):
            R.risk(theta, widths, act, X, Y, sample_weight=bad)
    for f in (lambda: R.loss_values("hinge", Y, Y), lambda: R.loss_gradient("l1", Y, Y),
              lambda: R.risk(theta, widths, act, X, Y, loss="mse"),
              lambda: R.generalized_gradient(theta, widths, act, X, Y, loss="mse")):
        with pytest.raises(ValueError):
            f()


# --- §5 (R3): G is the gradient where the risk is C¹ --------------------------------------------

@pytest.mark.parametrize("name", list(ALL))
@pytest.mark.parametrize("loss", ["squared_error", "cross_entropy"])
@pytest.mark.parametrize("weighted", [False, True])
def test_R3_gradient_matches_finite_differences(name, loss, weighted):
    act = ALL[name]
    widths = (3, 6, 5, 4)
    M = 9
    for attempt in range(20):
        rng = np.random.default_rng([zlib.crc32(f"{name}|{loss}|{weighted}".encode()), attempt])
        X = rng.normal(scale=1.5, size=(M, 3))
        if loss == "cross_entropy":
            Y = rng.dirichlet(np.ones(4), size=M)
        else:
            Y = rng.normal(size=(M, 4))
        w = rng.uniform(0.1, 2.0, size=M) if weighted else None
        theta = rng.normal(scale=0.8, size=R.dim(widths))
        if not act.kinks:
            break
        # L is C¹ at theta only away from the kinks; the FD step moves z by ~1e-5 at most
        hidden = np.concatenate([z.ravel() for z in R.pre_activations(theta, widths, act, X)[:-1]])
        if np.min(distance_to_kinks(hidden, act)) > 1e-3:
            break
    else:
        raise AssertionError("no kink-free random point found")
    G = R.generalized_gradient(theta, widths, act, X, Y, loss=loss, sample_weight=w)
    fd = central_fd(lambda t: R.risk(t, widths, act, X, Y, loss=loss, sample_weight=w), theta)
    assert G.shape == (R.dim(widths),)
    assert np.linalg.norm(G) > 1e-2
    assert np.linalg.norm(G - fd) <= 1e-7 * np.linalg.norm(G)


# --- §6: the regression case ------------------------------------------------------------------

def test_math6_relu_convention_regression():
    widths, theta, X, Y = MATH6_EXAMPLE
    G0 = R.generalized_gradient(theta, widths, A.get("relu"), X, Y)
    G1 = R.generalized_gradient(theta, widths, A.get("relu", 1.0), X, Y)
    np.testing.assert_array_equal(G0, [0, 0, 0, 2])
    np.testing.assert_array_equal(G1, [0, -2, 0, 2])
    np.testing.assert_array_equal(R.kink_counts(theta, widths, A.get("relu"), X), [1])


# --- §3: approximant families ---------------------------------------------------------------

def _window_edges(act, r):
    edges = []
    for kappa, right in zip(act.kinks, act.right_sided):
        edges += [kappa, kappa - 1 / r if right else kappa + 1 / r]
    return edges


@pytest.mark.parametrize("name", list(KINKED))
@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("family", ADMISSIBLE)
def test_admissible_approximants(name, side, family):
    act = ALL[name].with_convention(side)
    kinks = np.array(act.kinks)
    jumps = np.abs(np.diff(act.slopes))
    z = np.concatenate([np.linspace(kinks.min() - 2, kinks.max() + 2, 20001), kinks])
    a, gd = R.activation_value(act, z), R.generalized_derivative(act, z)
    max_slope = np.max(np.abs(act.slopes)) + np.max(jumps)
    for r in (1.0, 10.0, 1e2, 1e3, 1e6):
        A_r = R.approximant_value(act, z, r, family)
        dA_r = R.approximant_derivative(act, z, r, family)
        # A_r -> a uniformly, A_r = a at the kinks, A_r'(kappa) = the convention
        assert np.max(np.abs(A_r - a)) <= 0.25 * np.max(jumps) / r
        np.testing.assert_array_equal(R.approximant_value(act, kinks, r, family),
                                      R.activation_value(act, kinks))
        np.testing.assert_array_equal(R.approximant_derivative(act, kinks, r, family),
                                      act.derivative_at_kinks)
        # sup |A_r'| bounded uniformly in r
        assert np.max(np.abs(dA_r)) <= max_slope
        if r >= 10:
            # A_r differs from a only in the one-sided windows
            far = distance_to_kinks(z, act) >= 1 / r
            np.testing.assert_array_equal(A_r[far], a[far])
            np.testing.assert_array_equal(dA_r[far], gd[far])
            window = np.zeros_like(z, dtype=bool)
            for kappa, right in zip(act.kinks, act.right_sided):
                window |= (z < kappa) & (z > kappa - 1 / r) if right else \
                          (z > kappa) & (z < kappa + 1 / r)
            np.testing.assert_array_equal(A_r[~window], a[~window])
            if r <= 100:  # the grid resolves the windows
                assert np.any(A_r[window] != a[window])

    r, h = 10.0, 1e-6
    f = lambda x: R.approximant_value(act, x, r, family)  # noqa: E731
    for e in _window_edges(act, r):
        # C¹: the one-sided difference quotients agree with each other and with A_r'
        left, right = (f(e) - f(e - h)) / h, (f(e + h) - f(e)) / h
        assert abs(left - right) <= 1e-4 < np.min(jumps)
        assert abs(left - R.approximant_derivative(act, e, r, family)) <= 1e-4
    # A_r' is the derivative of A_r everywhere (inside the windows in particular)
    zz = np.concatenate([np.linspace(kappa - 1 / r, kappa + 1 / r, 41)[1:-1]
                         for kappa in act.kinks])
    zz = zz[np.abs(distance_to_kinks(zz, act)) > 1e-4]
    fd = (f(zz + 1e-7) - f(zz - 1e-7)) / 2e-7
    np.testing.assert_allclose(R.approximant_derivative(act, zz, r, family), fd, atol=1e-6)


def test_relu_profiles_written_out():
    # MATH §3: A_r = 0 for z <= 0, z for z >= 1/r, Phi(t)/r with t = r z in between, max slope
    # 4/3 for the cubic Phi(t) = 2t² - t³; the sine profile is Phi(t) = t²/2 + (1 - cos πt)/4
    relu, r = A.get("relu"), 7.0
    z = np.linspace(-1, 1, 4001)
    t = r * z
    profiles = {"cubic": 2 * t**2 - t**3, "sine": t**2 / 2 + (1 - np.cos(np.pi * t)) / 4}
    for family, Phi in profiles.items():
        expected = np.where(z <= 0, 0.0, np.where(z >= 1 / r, z, Phi / r))
        np.testing.assert_allclose(R.approximant_value(relu, z, r, family), expected, atol=1e-15)
    # right convention (relu'(0) = 1): the window moves to (-1/r, 0), A_r = (Phi(-t) + t)/r there
    relu1 = A.get("relu", 1.0)
    for family, Phi in {"cubic": 2 * t**2 + t**3,
                        "sine": t**2 / 2 + (1 - np.cos(np.pi * t)) / 4}.items():
        expected = np.where(z >= 0, z, np.where(z <= -1 / r, 0.0, (Phi + t) / r))
        np.testing.assert_allclose(R.approximant_value(relu1, z, r, family), expected, atol=1e-15)
    assert np.max(R.approximant_derivative(relu, z, r, "cubic")) <= 4 / 3 + 1e-15
    at_top = R.approximant_derivative(relu, 2 / (3 * r), r, "cubic")
    assert at_top == pytest.approx(4 / 3, rel=1e-14)


@pytest.mark.parametrize("name", list(SMOOTH) + ["identity"])
@pytest.mark.parametrize("family", list(A.FAMILIES))
def test_approximants_of_kink_free_activations_are_the_activation(name, family):
    act = ALL[name]
    z = np.linspace(-5, 5, 101)
    np.testing.assert_array_equal(R.approximant_value(act, z, 3.0, family),
                                  R.activation_value(act, z))
    np.testing.assert_array_equal(R.approximant_derivative(act, z, 3.0, family),
                                  R.generalized_derivative(act, z))


@pytest.mark.parametrize("name", list(KINKED))
@pytest.mark.parametrize("side", ["left", "right"])
def test_softplus_families(name, side):
    act = ALL[name].with_convention(side)
    kinks = np.array(act.kinks)
    jumps = np.diff(act.slopes)
    z = np.linspace(kinks.min() - 3, kinks.max() + 3, 6001)
    a = R.activation_value(act, z)
    for r in (10.0, 1e3, 1e6):
        for family in ("softplus", "shifted_softplus"):
            err = np.max(np.abs(R.approximant_value(act, z, r, family) - a))
            assert err <= np.sum(np.abs(jumps)) * (math.log(r) + 1) / r
        # plain softplus: the kink slope is the mean of the one-sided slopes for every r
        # (up to the other kinks' tails, which vanish as r grows)
        np.testing.assert_allclose(R.approximant_derivative(act, kinks, r, "softplus"),
                                   (np.array(act.slopes[:-1]) + act.slopes[1:]) / 2,
                                   atol=np.abs(jumps).sum() * math.exp(-r / 2))
        # shifted softplus: the kink slope tends to the convention like 1/r
        d = R.approximant_derivative(act, kinks, r, "shifted_softplus")
        np.testing.assert_allclose(d, act.derivative_at_kinks, atol=2 * np.abs(jumps).max() / r)
    r = 1e3
    fd = (R.approximant_value(act, z + 1e-7, r, "shifted_softplus")
          - R.approximant_value(act, z - 1e-7, r, "shifted_softplus")) / 2e-7
    np.testing.assert_allclose(R.approximant_derivative(act, z, r, "shifted_softplus"), fd,
                               atol=1e-5)


def test_approximant_argument_errors():
    relu = A.get("relu")
    X, Y, theta = [[1.0]], [[0.0]], np.ones(4)
    for family in ("quartic", "smooth"):
        with pytest.raises(ValueError):
            R.approximant_value(relu, 0.0, 10.0, family)
        with pytest.raises(ValueError):
            R.approx_gradient(theta, (1, 1, 1), relu, X, Y, 10.0, family)
    for r in (0.0, -1.0, np.inf, np.nan, "ten"):
        for f in (lambda r=r: R.approximant_value(relu, 0.0, r, "cubic"),
                  lambda r=r: R.approximant_derivative(A.get("tanh"), 0.0, r, "softplus"),
                  lambda r=r: R.approx_gradient(theta, (1, 1, 1), relu, X, Y, r)):
            with pytest.raises(ValueError):
                f()


# --- §4 / §5 (R1): admissible approximants reach G exactly on finite data ---------------------

def _integer_example(act, loss, widths=(2, 5, 4, 3), M=8):
    """Integer theta and data whose pre-activations hit kinks in every hidden layer and where
    the convention changes G (so the exactness test is not vacuous)."""
    left, right = act.with_convention("left"), act.with_convention("right")
    for seed in range(500):
        rng = np.random.default_rng(seed)
        theta = rng.integers(-2, 3, size=R.dim(widths)).astype(np.float64)
        X = rng.integers(-2, 3, size=(M, widths[0])).astype(np.float64)
        if loss == "cross_entropy":
            Y = np.eye(widths[-1])[rng.integers(0, widths[-1], size=M)]
        else:
            Y = rng.integers(-2, 3, size=(M, widths[-1])).astype(np.float64)
        counts = R.kink_counts(theta, widths, act, X)
        if np.all(counts > 0) and not np.array_equal(
                R.generalized_gradient(theta, widths, left, X, Y, loss=loss),
                R.generalized_gradient(theta, widths, right, X, Y, loss=loss)):
            return theta, widths, X, Y
    raise AssertionError("no integer example found")


@pytest.mark.parametrize("name", list(KINKED))
@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("loss", ["squared_error", "cross_entropy"])
def test_admissible_approx_gradient_equals_G_exactly(name, side, loss):
    act = ALL[name].with_convention(side)
    theta, widths, X, Y = _integer_example(act, loss)
    w = np.linspace(0.5, 1.5, X.shape[0])
    hidden = np.concatenate([z.ravel() for z in R.pre_activations(theta, widths, act, X)[:-1]])
    dist = distance_to_kinks(hidden, act)
    gap = np.min(dist[dist > 0])
    G = R.generalized_gradient(theta, widths, act, X, Y, loss=loss, sample_weight=w)
    for r in (1.01 / gap, 10 / gap, 1e6):
        grads = [R.approx_gradient(theta, widths, act, X, Y, r, family, loss=loss,
                                   sample_weight=w) for family in ADMISSIBLE]
        np.testing.assert_array_equal(grads[0], G)
        np.testing.assert_array_equal(grads[1], G)
    # the shifted softplus only approaches G, it does not reach it
    far = R.approx_gradient(theta, widths, act, X, Y, 1e3, "shifted_softplus", loss=loss,
                            sample_weight=w)
    assert not np.array_equal(far, G)


def test_plain_softplus_converges_to_the_half_rule_at_a_first_layer_kink():
    # MATH §6 example: the kink is hit in the first layer, so no cancellation is involved
    widths, theta, X, Y = MATH6_EXAMPLE
    G_half = np.array([0.0, -1.0, 0.0, 2.0])
    for convention in (0.0, 1.0):
        act = A.get("relu", convention)
        G = R.generalized_gradient(theta, widths, act, X, Y)
        for r in (1e2, 1e4, 1e6):
            plain = R.approx_gradient(theta, widths, act, X, Y, r, "softplus")
            assert np.linalg.norm(plain - G_half) <= 3 / r
            assert np.linalg.norm(plain - G) >= 0.99
            shifted = R.approx_gradient(theta, widths, act, X, Y, r, "shifted_softplus")
            # A_r(0) = log(1 + r^{∓1}) / r, so the error is O(log r / r)
            assert np.linalg.norm(shifted - G) <= 4 * math.log(r) / r
            for family in ADMISSIBLE:
                np.testing.assert_array_equal(
                    R.approx_gradient(theta, widths, act, X, Y, r, family), G)


# --- docs/math.md §3: the cancellation example -------------------------------------------

def _relu_backprop(theta, widths, X, Y, slope_at_zero):
    """Squared-error, mean-risk backprop for a ReLU net with relu'(0) = slope_at_zero,
    written out independently of reference._backprop."""
    params = R.unflatten(theta, widths)
    grads = []
    for x, y in zip(np.asarray(X, float), np.asarray(Y, float)):
        hs, zs = [x], []
        for W, b in params:
            zs.append(W @ hs[-1] + b)
            hs.append(np.maximum(zs[-1], 0))
        delta = 2 * (zs[-1] - y) / len(X)
        per_layer = []
        for k in range(len(params) - 1, -1, -1):
            per_layer.append((np.outer(delta, hs[k]), delta))
            if k:
                z = zs[k - 1]
                slope = np.where(z > 0, 1.0, np.where(z < 0, 0.0, slope_at_zero))
                delta = slope * (params[k][0].T @ delta)
        per_layer.reverse()
        grads.append(np.concatenate([np.concatenate([gW.ravel(), gb]) for gW, gb in per_layer]))
    return np.sum(grads, axis=0)


@pytest.mark.parametrize("convention", [0.0, 1.0])
def test_cancellation_example(convention):
    widths, theta, X, Y = CANCELLATION_EXAMPLE
    act = A.get("relu", convention)
    zs = R.pre_activations(theta, widths, act, X)
    np.testing.assert_array_equal(zs[1], [[0.0], [0.0]])
    np.testing.assert_array_equal(R.kink_counts(theta, widths, act, X), [0, 2])

    G = R.generalized_gradient(theta, widths, act, X, Y)
    np.testing.assert_array_equal(_relu_backprop(theta, widths, X, Y, convention), G)
    G_half = _relu_backprop(theta, widths, X, Y, 0.5)
    G0 = R.generalized_gradient(theta, widths, A.get("relu", 0.0), X, Y)
    G1 = R.generalized_gradient(theta, widths, A.get("relu", 1.0), X, Y)
    # here the layer-2 slope enters G linearly (only layer 2 hits the kink): verified, not assumed
    np.testing.assert_allclose(G_half, (G0 + G1) / 2, rtol=0, atol=1e-15)
    assert G_half[6] == -0.5                                   # the b2 component
    assert np.linalg.norm(G_half - G0) == pytest.approx(1.458, abs=1e-3)  # docs/math.md §3

    dists = []
    for r in (1e2, 1e3, 1e4, 1e5, 1e6):
        shifted = R.approx_gradient(theta, widths, act, X, Y, r, "shifted_softplus")
        dists.append(np.linalg.norm(shifted - G_half))
        assert dists[-1] <= 2 * math.log(r) / r
        assert np.linalg.norm(shifted - G) >= 1.4
        for family in ADMISSIBLE:
            np.testing.assert_array_equal(
                R.approx_gradient(theta, widths, act, X, Y, r, family), G)
    assert all(b < a for a, b in zip(dists, dists[1:]))
    assert dists[-1] < 5e-5


# --- §6: kink counts --------------------------------------------------------------------------

def test_kink_counts_integer_example():
    widths = (2, 3, 2, 1)
    W1, b1 = [[1, 0], [0, 1], [1, 1]], [0, 0, 0]
    W2, b2 = [[1, -1, 0], [0, 0, 1]], [0, -2]
    W3, b3 = [[1, 0]], [0]
    theta = np.concatenate([np.ravel(W1), b1, np.ravel(W2), b2, np.ravel(W3), b3]).astype(float)
    X = np.array([[0.0, 0.0], [1.0, -1.0], [1.0, 1.0]])
    # relu: z1 = [[0,0,0],[1,-1,0],[1,1,2]] (4 zeros); z2 = [[0,-2],[1,-2],[0,0]] (3 zeros);
    # the output z3 = [0,1,0] has zeros too, but the affine output layer is not counted
    counts = R.kink_counts(theta, widths, A.get("relu"), X)
    assert counts.dtype == np.int64
    np.testing.assert_array_equal(counts, [4, 3])
    np.testing.assert_array_equal(R.forward(theta, widths, A.get("relu"), X), [[0], [1], [0]])
    # hardtanh (kinks -1, 1): z1 has two ±1 in rows 2 and 3; z2 = [[0,-2],[2,-2],[0,-1]]
    np.testing.assert_array_equal(R.kink_counts(theta, widths, A.get("hardtanh"), X), [4, 1])
    np.testing.assert_array_equal(R.kink_counts(theta, widths, A.get("tanh"), X), [0, 0])
    np.testing.assert_array_equal(R.kink_counts(theta[:13], (2, 3, 1), A.get("relu"), X), [4])
