"""The compiled core against the NumPy reference beyond the cross-implementation table
(test_cross_implementation.py holds risk, G, pre-activations and kink counts of every backend to
the reference): approximate gradients, conventions, thread determinism, batches spanning
blocks, the layout."""
import numpy as np
import pytest

import gengrad
from conftest import ACTIVATION_IDS, ACTIVATIONS, kink_problem, random_problem, relative_error
from gengrad import reference


@pytest.mark.parametrize("family", ["cubic", "sine", "softplus", "shifted_softplus"])
@pytest.mark.parametrize("activation,convention", ACTIVATIONS, ids=ACTIVATION_IDS)
def test_approx_gradient_matches_reference(family, activation, convention, isa):
    widths = (2, 6, 5, 1)
    net = gengrad.Network(widths, activation, convention)
    w, act = net.widths, net.activation
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


# Widths and batches that take the packed paths of cpp/cpu/mlp.hpp: weight panels (a layer of
# at least 16 rows and depth 64, blocks of 256 samples and more), the weight gradient as a
# product (at least 64 rows and 64 columns) cut into slices of 1024 samples, row counts that
# are no multiple of the tile height and column counts that are no multiple of a vector.
WIDE = (70, 77, 130, 3)


@pytest.mark.parametrize("make_problem", [random_problem, kink_problem], ids=["random", "kinks"])
def test_wide_layers_match_reference(make_problem, isa):
    theta, X, Y = make_problem(WIDE, 1500, seed=21)
    net = gengrad.Network(WIDE, "relu")
    risk = reference.risk(theta, net.widths, net.activation, X, Y)
    G = reference.generalized_gradient(theta, net.widths, net.activation, X, Y)
    if make_problem is kink_problem:
        assert net.kink_counts(theta, X).sum() > 1000
    actual_risk, actual = net.risk_and_gradient(theta, X, Y)
    assert abs(actual_risk - risk) <= 1e-12 * abs(risk) and relative_error(actual, G) <= 1e-12
    assert relative_error(net.forward(theta, X), reference.forward(theta, net.widths, net.activation, X)) <= 1e-13
    theta32, X32, Y32 = (a.astype(np.float32) for a in (theta, X, Y))
    assert relative_error(net.gradient(theta32, X32, Y32), G) <= 1e-4


def test_wide_layers_are_bitwise_identical_for_any_thread_count():
    theta, X, Y = kink_problem(WIDE, 2500, seed=22)
    net = gengrad.Network(WIDE, "relu")
    before = gengrad.get_num_threads()
    try:
        results = []
        for n in (1, 2, 3):
            gengrad.set_num_threads(n)
            results.append((net.risk_and_gradient(theta, X, Y), net.forward(theta, X)))
    finally:
        gengrad.set_num_threads(before)
    for (risk, G), out in results[1:]:
        assert risk == results[0][0][0] and np.array_equal(G, results[0][0][1])
        assert np.array_equal(out, results[0][1])


def test_an_odd_number_of_float32_panel_values_matches_reference():
    """17 x 65 weights packed into panels: 1105 float32 values, after which the per-sample
    losses (doubles) must still start aligned (UBSan, .ci/sanitizers, found them 4 bytes off)."""
    widths = (65, 17, 1)
    net = gengrad.Network(widths, "relu")
    theta, X, Y = random_problem(widths, 300, seed=25)
    G = reference.generalized_gradient(theta, widths, net.activation, X, Y)
    G32 = net.gradient(*(a.astype(np.float32) for a in (theta, X, Y)))
    assert relative_error(G32, G) <= 1e-4


@pytest.mark.parametrize("policy, widths, M", [("per_worker", (3000, 3000, 1), 600),
                                               ("per_worker", (70, 300, 64, 3), 700),
                                               ("shared", (70, 300, 64, 3), 700)])
def test_both_weight_panel_policies_agree_with_one_thread(policy, widths, M):
    """Each worker of a call reads its own copy of the weight panels (up to 64 MiB of copies:
    3000 x 3000 float32 weights, 36 MB of panels, leave one copy that both threads share), or
    all read one copy (the default on AMD): either way bitwise the 1-thread result.
    test_memory.py checks that the policy is applied (per_worker holds one more copy)."""
    net = gengrad.Network(widths, "relu")
    theta, X, Y = (a.astype(np.float32) for a in kink_problem(widths, M, seed=24))
    before = gengrad.get_num_threads()
    try:
        gengrad.select_weight_panels(policy)
        results = []
        for n in (1, 2):
            gengrad.set_num_threads(n)
            results.append(net.risk_and_gradient(theta, X, Y))
    finally:
        gengrad.set_num_threads(before)
        gengrad.select_weight_panels("auto")
    assert results[1][0] == results[0][0] and np.array_equal(results[1][1], results[0][1])


def test_a_weight_panel_policy_is_named_or_refused():
    assert gengrad.select_weight_panels("auto") == gengrad.build_info()["weight_panels"]
    with pytest.raises(ValueError, match="'per-worker'.*expected 'auto', 'shared' or 'per_worker'"):
        gengrad.select_weight_panels("per-worker")
    assert gengrad.build_info()["weight_panels"] in ("shared", "per_worker")


def test_a_non_finite_value_is_found_in_any_piece_of_a_large_input():
    """The finiteness check of large arrays runs in pieces on the core's threads; the first bad
    value is reported, whichever piece holds it."""
    net = gengrad.Network((100, 3, 1))
    theta, X, Y = random_problem((100, 3, 1), 5000, seed=23)
    for first, second in ((499_999, None), (70_000, 400_000), (131_072, 131_073), (0, 499_999)):
        bad = X.copy()
        bad.flat[first] = np.nan
        if second is not None:
            bad.flat[second] = np.inf
        with pytest.raises(ValueError, match=rf"X contains NaN or Inf \(first at flat index {first}\)"):
            net.gradient(theta, bad, Y)
