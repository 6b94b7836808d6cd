"""Ensembles: every network's results are bitwise those of Network, in one call."""
import numpy as np
import pytest

import gengrad
from conftest import kink_problem, random_problem

WIDTHS = (2, 7, 5, 3)


def _data(n, M, per_net, loss, seed=0):
    rng = np.random.default_rng(seed)
    shape = (n, M) if per_net else (M,)
    X = rng.normal(size=shape + (WIDTHS[0],))
    Y = np.eye(WIDTHS[-1])[rng.integers(0, WIDTHS[-1], size=shape)] if loss == "cross_entropy" \
        else rng.normal(size=shape + (WIDTHS[-1],))
    return X, Y


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("loss", ["squared_error", "cross_entropy"])
@pytest.mark.parametrize("per_net", [False, True])
@pytest.mark.parametrize("weighted", [False, True])
def test_each_network_matches_network_bitwise(dtype, loss, per_net, weighted):
    n, M = 5, 37
    ens = gengrad.Ensemble(WIDTHS, n, "relu", loss=loss)
    thetas = ens.init(1, dtype)
    X, Y = (a.astype(dtype) for a in _data(n, M, per_net, loss))
    rng = np.random.default_rng(2)
    w = rng.uniform(0, 1, size=(n, M) if per_net else (M,)).astype(dtype) if weighted else None
    risks, G = ens.risk_and_gradient(thetas, X, Y, sample_weight=w)
    assert risks.shape == (n,) and G.shape == (n, ens.dim) and G.dtype == dtype
    for i in range(n):
        def pick(a, i=i):
            return a[i] if per_net else a
        r, g = ens.network.risk_and_gradient(thetas[i], pick(X), pick(Y),
                                            sample_weight=None if w is None else pick(w))
        assert risks[i] == r and np.array_equal(G[i], g)
    assert np.array_equal(ens.risk(thetas, X, Y, sample_weight=w), risks)


def test_exact_kinks_conventions_and_approximants():
    n = 4
    theta, X, Y = kink_problem(WIDTHS, 30, seed=3)
    thetas = np.stack([theta + i for i in range(n)])
    for convention in (0.0, 1.0):
        ens = gengrad.Ensemble(WIDTHS, n, "relu", convention)
        G = ens.gradient(thetas, X, Y)
        for i in range(n):
            assert np.array_equal(G[i], ens.network.gradient(thetas[i], X, Y))
        A = ens.approx_gradient(thetas, X, Y, 1e3, "sine")
        for i in range(n):
            assert np.array_equal(A[i], ens.network.approx_gradient(thetas[i], X, Y, 1e3, "sine"))
    assert ens.kink_counts(thetas, X).shape == (n, 2) and ens.kink_counts(thetas, X)[0].sum() > 0
    assert ens.forward(thetas, X).shape == (n, 30, WIDTHS[-1])


def test_step_is_gradient_descent_in_place():
    ens = gengrad.Ensemble(WIDTHS, 3)
    thetas = ens.init(0)
    X, Y = _data(3, 20, False, "squared_error")
    expected = thetas - 0.1 * ens.gradient(thetas, X, Y)
    before = ens.risk(thetas, X, Y)
    assert np.array_equal(ens.step(thetas, X, Y, lr=0.1), before)
    assert np.allclose(thetas, expected, rtol=0, atol=1e-15)
    assert np.all(ens.risk(thetas, X, Y) < before)


def test_thread_count_does_not_change_results():
    ens = gengrad.Ensemble((4, 32, 32, 1), 16)
    thetas = ens.init(0)
    theta, X, Y = random_problem((4, 32, 32, 1), 300, seed=1)
    before = gengrad.get_num_threads()
    try:
        gengrad.set_num_threads(1)
        one = ens.risk_and_gradient(thetas, X, Y)
        gengrad.set_num_threads(2)
        two = ens.risk_and_gradient(thetas, X, Y)
    finally:
        gengrad.set_num_threads(before)
    assert np.array_equal(one[0], two[0]) and np.array_equal(one[1], two[1])


def test_init_is_reproducible_and_differs_between_networks():
    ens = gengrad.Ensemble(WIDTHS, 4)
    a, b = ens.init(7), ens.init(7)
    assert np.array_equal(a, b) and not np.array_equal(a[0], a[1])
    assert ens.init(7, np.float32).dtype == np.float32


def test_bad_input():
    ens = gengrad.Ensemble(WIDTHS, 3)
    thetas = ens.init(0)
    X, Y = _data(3, 10, False, "squared_error")
    with pytest.raises(ValueError, match=r"thetas must have shape \(3, 79\)"):
        ens.gradient(thetas[:2], X, Y)
    with pytest.raises(ValueError, match="X must have shape"):
        ens.gradient(thetas, X[:, :1], Y)
    with pytest.raises(ValueError, match="X must have shape"):
        ens.gradient(thetas, np.stack([X] * 2), Y)
    with pytest.raises(ValueError, match="Y must have shape"):
        ens.gradient(thetas, X, Y[:5])
    with pytest.raises(ValueError, match="sample_weight must have shape"):
        ens.gradient(thetas, X, Y, sample_weight=np.ones((2, 10)))
    with pytest.raises(ValueError, match="out must have shape"):
        ens.gradient(thetas, X, Y, out=np.empty(79))
    with pytest.raises(ValueError, match="thetas contains NaN"):
        bad = thetas.copy()
        bad[2, 5] = np.nan
        ens.gradient(bad, X, Y)
    with pytest.raises(ValueError, match="n must be >= 1"):
        gengrad.Ensemble(WIDTHS, 0)
    with pytest.raises(TypeError, match="n must be an integer"):
        gengrad.Ensemble(WIDTHS, 2.0)
    with pytest.raises(ValueError, match="writeable C-contiguous"):
        ens.step(thetas[:, ::1].T.copy().T, X, Y, 0.1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("per_net", [False, True])
def test_forward_and_kink_counts_are_each_networks_bitwise_for_every_thread_count(dtype, per_net):
    """The compiled core computes an ensemble's forward pass and kink counts natively, one network
    per task; kink-hitting integer data make the counts non-trivial."""
    n, M = 6, 300
    ens = gengrad.Ensemble(WIDTHS, n, "relu")
    rng = np.random.default_rng(5)
    thetas = rng.integers(-2, 3, size=(n, ens.dim)).astype(dtype)
    X = rng.integers(-2, 3, size=((n, M) if per_net else (M,)) + (WIDTHS[0],)).astype(dtype)
    results = []
    for threads in (1, 2):
        with gengrad.threads.limit(threads):
            results.append((ens.forward(thetas, X), ens.kink_counts(thetas, X)))
    for forward, counts in results:
        assert forward.dtype == dtype and counts.shape == (n, len(WIDTHS) - 2) and counts.sum() > 0
        for i in range(n):
            x = X[i] if per_net else X
            assert np.array_equal(forward[i], ens.network.forward(thetas[i], x))
            assert np.array_equal(counts[i], ens.network.kink_counts(thetas[i], x))


def test_the_reference_backend_computes_ensembles_too():
    n, M = 3, 20
    cpp, ref = gengrad.Ensemble(WIDTHS, n, "relu"), gengrad.Ensemble(WIDTHS, n, "relu", backend="reference")
    thetas = cpp.init(4)
    X, Y = _data(n, M, True, "squared_error")
    risks, G = ref.risk_and_gradient(thetas, X, Y)
    expected_risks, expected_G = cpp.risk_and_gradient(thetas, X, Y)
    np.testing.assert_allclose(risks, expected_risks, rtol=1e-12)
    np.testing.assert_allclose(G, expected_G, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ref.forward(thetas, X), cpp.forward(thetas, X), rtol=1e-12, atol=1e-14)
    assert np.array_equal(ref.kink_counts(thetas, X), cpp.kink_counts(thetas, X))
