"""The compiled core against the NumPy reference (the oracle): every operation, every
activation and convention, both losses, float64 and float32, random data and data that hits
kinks exactly, batch sizes 1 and odd, with and without sample weights, on every kernel build
the CPU supports."""
import numpy as np
import pytest

import gengrad
from gengrad import reference
from conftest import ACTIVATIONS, ACTIVATION_IDS, kink_problem, random_problem, relative_error

ARCHITECTURES = [(1, 16, 16, 1), (3, 5, 2), (4, 1, 3), (2, 3, 4, 3, 5, 2), (5, 17, 9, 3)]
BATCHES = [1, 7, 64, 130]
LOSSES = ["squared_error", "cross_entropy"]


def _networks(activation, convention, widths, loss):
    core = gengrad.Network(widths, activation, convention, loss=loss)
    return core, (core.widths, core.activation)


def _weights(M, seed):
    return np.random.default_rng(seed).uniform(0.0, 2.0, size=M)


@pytest.mark.parametrize("activation,convention", ACTIVATIONS, ids=ACTIVATION_IDS)
@pytest.mark.parametrize("loss", LOSSES)
def test_float64_matches_reference_on_random_data(activation, convention, loss, isa):
    for case, (widths, M) in enumerate(zip(ARCHITECTURES, BATCHES + [33])):
        net, (w, act) = _networks(activation, convention, widths, loss)
        theta, X, Y = random_problem(widths, M, seed=case, loss=loss)
        weight = _weights(M, case) if case % 2 else None
        risk, G = net.risk_and_gradient(theta, X, Y, sample_weight=weight)
        kw = dict(loss=loss, sample_weight=weight)
        assert relative_error(risk, reference.risk(theta, w, act, X, Y, **kw)) <= 1e-12
        assert relative_error(G, reference.generalized_gradient(theta, w, act, X, Y, **kw)) <= 1e-12
        assert relative_error(net.forward(theta, X), reference.forward(theta, w, act, X)) <= 1e-12
        for z, z_ref in zip(net.pre_activations(theta, X), reference.pre_activations(theta, w, act, X), strict=True):
            assert relative_error(z, z_ref) <= 1e-12
        assert np.array_equal(net.kink_counts(theta, X), reference.kink_counts(theta, w, act, X))


@pytest.mark.parametrize("activation,convention", ACTIVATIONS, ids=ACTIVATION_IDS)
@pytest.mark.parametrize("loss", LOSSES)
def test_float64_matches_reference_at_exact_kinks(activation, convention, loss, isa):
    hits = 0
    for case, (widths, M) in enumerate(zip(ARCHITECTURES, BATCHES + [33])):
        net, (w, act) = _networks(activation, convention, widths, loss)
        theta, X, Y = kink_problem(widths, M, seed=100 + case, loss=loss)
        counts = net.kink_counts(theta, X)
        assert np.array_equal(counts, reference.kink_counts(theta, w, act, X))
        for z, z_ref in zip(net.pre_activations(theta, X), reference.pre_activations(theta, w, act, X), strict=True):
            if net.activation.piecewise_linear:  # integer data and dyadic slopes: exact arithmetic
                assert np.array_equal(z, z_ref)
            assert relative_error(z, z_ref) <= 1e-12
        hits += counts.sum()
        risk, G = net.risk_and_gradient(theta, X, Y)
        assert relative_error(risk, reference.risk(theta, w, act, X, Y, loss=loss)) <= 1e-12
        assert relative_error(G, reference.generalized_gradient(theta, w, act, X, Y, loss=loss)) <= 1e-12
    if net.activation.kinks and net.activation.name != "relu6":
        assert hits > 0, "the integer data must hit kinks, or this test checks nothing"


@pytest.mark.parametrize("activation,convention", ACTIVATIONS, ids=ACTIVATION_IDS)
def test_float32_within_1e5_of_float64_reference(activation, convention, isa):
    for case, (widths, M) in enumerate(zip(ARCHITECTURES, BATCHES + [33])):
        net, (w, act) = _networks(activation, convention, widths, "squared_error")
        theta, X, Y = random_problem(widths, M, seed=200 + case)
        risk, G = net.risk_and_gradient(theta.astype(np.float32), X.astype(np.float32), Y.astype(np.float32))
        assert G.dtype == np.float32
        # The float64 reference at the float32-rounded inputs: what float32 arithmetic approximates.
        t32, X32, Y32 = (a.astype(np.float32).astype(np.float64) for a in (theta, X, Y))
        assert relative_error(G, reference.generalized_gradient(t32, w, act, X32, Y32)) <= 1e-5
        assert relative_error(risk, reference.risk(t32, w, act, X32, Y32)) <= 1e-5


@pytest.mark.parametrize("activation,convention", ACTIVATIONS[:11], ids=ACTIVATION_IDS[:11])
def test_float32_kink_decisions_agree_exactly(activation, convention, isa):
    widths = (3, 6, 5, 2)
    net, (w, act) = _networks(activation, convention, widths, "squared_error")
    theta, X, Y = kink_problem(widths, 40, seed=7)
    G32 = net.gradient(theta.astype(np.float32), X.astype(np.float32), Y.astype(np.float32))
    assert np.array_equal(net.kink_counts(theta.astype(np.float32), X.astype(np.float32)),
                          reference.kink_counts(theta, w, act, X))
    # integer data: every product and sum is exact in float32, so only the final weighting rounds
    assert relative_error(G32, reference.generalized_gradient(theta, w, act, X, Y)) <= 1e-6


@pytest.mark.parametrize("family", ["cubic", "sine", "softplus", "shifted_softplus"])
@pytest.mark.parametrize("activation,convention", ACTIVATIONS, ids=ACTIVATION_IDS)
def test_approx_gradient_matches_reference(family, activation, convention, isa):
    widths = (2, 6, 5, 1)
    net, (w, act) = _networks(activation, convention, widths, "squared_error")
    for theta, X, Y in (random_problem(widths, 9, seed=3), kink_problem(widths, 9, seed=4)):
        for r in (3.0, 1e3):
            expected = reference.approx_gradient(theta, w, act, X, Y, r, family)
            assert relative_error(net.approx_gradient(theta, X, Y, r, family), expected) <= 1e-12


def test_conventions_change_G_exactly_where_kinks_are_hit():
    widths = (3, 6, 5, 2)
    theta, X, Y = kink_problem(widths, 40, seed=11)
    left = gengrad.Network(widths, "relu", 0.0)
    right = gengrad.Network(widths, "relu", 1.0)
    assert left.kink_counts(theta, X).sum() > 0
    assert not np.array_equal(left.gradient(theta, X, Y), right.gradient(theta, X, Y))
    theta, X, Y = random_problem(widths, 40, seed=11)
    assert np.array_equal(left.gradient(theta, X, Y), right.gradient(theta, X, Y))


def test_results_are_bitwise_identical_for_any_thread_count():
    widths = (20, 64, 64, 3)
    theta, X, Y = random_problem(widths, 3000, seed=5)  # several blocks, parallel paths taken
    nets = [gengrad.Network(widths, "relu"), gengrad.Network(widths, "tanh", loss="cross_entropy")]
    Yc = np.eye(3)[np.arange(3000) % 3]
    before = gengrad.get_num_threads()
    try:
        results = []
        for n in (1, 2, 3):
            gengrad.set_num_threads(n)
            results.append([(net.risk_and_gradient(theta, X, Y if net.loss == "squared_error" else Yc),
                             net.forward(theta, X)) for net in nets])
    finally:
        gengrad.set_num_threads(before)
    for other in results[1:]:
        for ((r0, g0), f0), ((r1, g1), f1) in zip(results[0], other):
            assert r0 == r1 and np.array_equal(g0, g1) and np.array_equal(f0, f1)


def test_large_batch_spanning_blocks_matches_reference():
    widths = (30, 40, 2)
    theta, X, Y = random_problem(widths, 20000, seed=9)
    net = gengrad.Network(widths, "relu")
    G = reference.generalized_gradient(theta, net.widths, net.activation, X, Y)
    assert relative_error(net.gradient(theta, X, Y), G) <= 1e-12


def test_layout_matches_reference_and_views_write_theta():
    net = gengrad.Network((3, 4, 2))
    assert net.layout == reference.layout((3, 4, 2)) and net.dim == reference.dim((3, 4, 2)) == 26
    theta = np.arange(net.dim, dtype=np.float64)
    for (W, b), (Wr, br) in zip(net.layers(theta), reference.unflatten(theta, (3, 4, 2))):
        assert np.array_equal(W, Wr) and np.array_equal(b, br)
    net.layers(theta)[1][1][:] = -1
    assert np.array_equal(theta[-2:], [-1, -1])
    assert np.array_equal(net.flatten(net.layers(theta)), theta)


def test_layout_equals_torch_parameters_to_vector():
    torch = pytest.importorskip("torch")
    widths = (3, 5, 4, 2)
    torch.manual_seed(0)
    seq = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.ReLU(), torch.nn.Linear(5, 4),
                              torch.nn.ReLU(), torch.nn.Linear(4, 2)).double()
    theta = torch.nn.utils.parameters_to_vector(seq.parameters()).detach().numpy()
    net = gengrad.Network(widths)
    X = np.random.default_rng(0).normal(size=(6, 3))
    assert np.allclose(net.forward(theta, X), seq(torch.from_numpy(X)).detach().numpy(), rtol=1e-13, atol=1e-13)


def test_G_matches_torch_autograd_at_exact_kinks():
    torch = pytest.importorskip("torch")
    widths = (3, 6, 5, 2)
    theta, X, Y = kink_problem(widths, 40, seed=11)
    net = gengrad.Network(widths, "relu")
    assert net.kink_counts(theta, X).sum() > 0
    t = torch.tensor(theta, requires_grad=True)
    z, h = None, torch.from_numpy(X)
    for k, (w_off, b_off, rows, cols) in enumerate(net.layout):
        z = h @ t[w_off:w_off + rows * cols].reshape(rows, cols).T + t[b_off:b_off + rows]
        h = torch.relu(z) if k < len(net.layout) - 1 else z
    ((z - torch.from_numpy(Y)) ** 2).sum(dim=1).mean().backward()
    assert relative_error(net.gradient(theta, X, Y), t.grad.numpy()) <= 1e-12


def test_concurrent_calls_from_python_threads_match_serial_calls():
    from concurrent.futures import ThreadPoolExecutor
    widths = (6, 40, 30, 2)
    net = gengrad.Network(widths, "relu")
    problems = [random_problem(widths, 500 + 37 * i, seed=i) for i in range(8)]
    serial = [net.risk_and_gradient(*p) for p in problems]
    with ThreadPoolExecutor(max_workers=4) as pool:  # the GIL is released: real concurrency
        for _ in range(3):
            for (r, g), (r0, g0) in zip(pool.map(lambda p: net.risk_and_gradient(*p), problems), serial):
                assert r == r0 and np.array_equal(g, g0)
