"""gengrad.flow against closed forms, SciPy, and an independent piecewise reference
(tests/flow_reference.py: NumPy frozen-pattern gradients, SciPy DOP853 at rtol 1e-13 on each
smooth piece, textbook Filippov sliding)."""
import numpy as np
import pytest
from scipy.integrate import solve_ivp
from scipy.linalg import expm

import gengrad
from flow_reference import piecewise_flow
from gengrad import activations, reference

TIGHT = dict(rtol=1e-12, atol=1e-14)


def sine_data(M=8):
    X = np.linspace(-1, 1, M)[:, None]
    return X, np.sin(3 * X)


def event_tuples(result):
    return [(e.kind, (e.layer, e.sample, e.neuron)) for e in result.events]


def assert_matches_reference(net, theta0, X, Y, t_end, state_tol=1e-10, time_tol=1e-8):
    result = gengrad.flow(net, theta0, X, Y, t_end, **TIGHT)
    assert result.success, result.message
    expected, events = piecewise_flow(net, theta0, X, Y, t_end)
    assert event_tuples(result) == [(kind, tuple(int(i) for i in unit)) for _, kind, unit in events]
    assert np.allclose([e.t for e in result.events], [t for t, _, _ in events], rtol=0, atol=time_tol)
    assert np.max(np.abs(result.theta_final - expected)) <= state_tol
    return result


# --- smooth fields: closed form and SciPy ------------------------------------------------------

def test_linear_regression_has_the_closed_form():
    """No hidden layer: G(theta) = H theta - g is affine, theta(t) = theta* + e^{-Ht}(theta0 - theta*)."""
    net = gengrad.Network((3, 2), "identity")
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(10, 3)), rng.normal(size=(10, 2))
    theta0 = rng.normal(size=net.dim)
    G0 = net.gradient(np.zeros(net.dim), X, Y)
    H = np.stack([net.gradient(e, X, Y) - G0 for e in np.eye(net.dim)], axis=1)
    theta_star = np.linalg.solve(H, -G0)
    times = np.linspace(0, 3, 7)
    result = gengrad.flow(net, theta0, X, Y, 3.0, rtol=1e-11, atol=1e-13, t_eval=times)
    exact = np.stack([theta_star + expm(-H * t) @ (theta0 - theta_star) for t in times])
    assert np.max(np.abs(result.theta_eval - exact)) < 1e-10
    assert result.events == [] and result.n_forward_passes == len(times)


@pytest.mark.parametrize("activation,loss,widths", [
    ("tanh", "squared_error", (2, 5, 1)), ("softplus", "cross_entropy", (2, 4, 3)),
    ("gelu", "squared_error", (1, 3, 3, 1)),
])
def test_smooth_flow_matches_scipy_dop853(activation, loss, widths):
    net = gengrad.Network(widths, activation, loss=loss)
    rng = np.random.default_rng(1)
    X = rng.normal(size=(12, widths[0]))
    Y = rng.integers(0, widths[-1], 12) if loss == "cross_entropy" else rng.normal(size=(12, 1))
    Yd = np.eye(widths[-1])[Y] if loss == "cross_entropy" else Y
    theta0 = net.init(seed=2, scheme="torch")
    times = np.linspace(0, 4, 5)

    def field(_, theta):
        return -reference.generalized_gradient(theta, widths, net.activation, X, Yd, loss=loss)
    expected = solve_ivp(field, (0, 4), theta0, method="DOP853", rtol=1e-13, atol=1e-15,
                         t_eval=times).y.T
    result = gengrad.flow(net, theta0, X, Y, 4.0, t_eval=times, **TIGHT)
    assert np.max(np.abs(result.theta_eval - expected)) < 1e-10
    assert result.events == []


# --- piecewise-linear fields: events, crossings, sliding ----------------------------------------

def test_relu_flow_with_crossings_and_sliding_matches_reference():
    net = gengrad.Network((1, 4, 1), "relu")
    X, Y = sine_data()
    result = assert_matches_reference(net, net.init(seed=3), X, Y, 10.0)
    assert {e.kind for e in result.events} == {"crossing", "sliding-start"}


@pytest.mark.parametrize("activation", [activations.leaky_relu(0.2), "abs",
                                        activations.hardtanh(-0.3, 0.4)],
                         ids=["leaky_relu", "abs", "hardtanh"])
def test_kinked_activations_match_reference(activation):
    net = gengrad.Network((1, 4, 1), activation)
    X, Y = sine_data()
    assert_matches_reference(net, net.init(seed=3), X, Y, 6.0)


@pytest.mark.parametrize("seed", [16, 10])
def test_two_hidden_layers_match_reference(seed):
    """Events in both layers; seed 10 has up to three surfaces sliding at once (the multilinear
    Filippov field of the reference, against the core's tangent projection)."""
    net = gengrad.Network((1, 4, 3, 1), "relu")
    rng = np.random.default_rng(seed)
    X = np.linspace(-1, 1, 8)[:, None]
    Y = np.sin(3 * X) + 0.3 * rng.normal(size=(8, 1))
    result = assert_matches_reference(net, net.init(seed=seed, scheme="torch"), X, Y, 5.0)
    assert {e.layer for e in result.events} == {1, 2}
    assert {"sliding-start", "sliding-end"} <= {e.kind for e in result.events}


def test_wide_layers_match_reference():
    """Layers wide enough and samples enough for the packed paths of the frozen-pattern kernels
    (weight panels, the weight gradient as a product, forward-mode tangents beside them)."""
    net = gengrad.Network((64, 70, 66, 2), "relu")
    rng = np.random.default_rng(31)
    X, Y = rng.normal(size=(256, 64)), rng.normal(size=(256, 2))
    result = assert_matches_reference(net, net.init(seed=31, scheme="torch"), X, Y, 0.01)
    assert len(result.events) >= 20


def hand_problem(b=0.0):
    """widths (1,1,1), theta = (w, b, v, c), out = v relu(w x + b) + c, samples (x, y) = (0, -1)
    and (1, 1), weights 1/2. Sample 0's unit is z = b. With sample 1 active, dL/db is
    (out_1 - y_1) v from sample 1 and, only when b > 0, (out_0 - y_0) v = (c + 1) v from sample 0.
    At theta = (0.5, 0, 1, 0): db/dt = +0.5 from below, 0.5 - 1 = -0.5 from above, so the flow
    slides on b = 0 with alpha = 0.5 (Filippov); while it slides, b stays 0 and (w, v, c) follow
    the gradient flow of L_s(w, v, c) = ((c + 1)^2 + (v w + c - 1)^2) / 2 (sample 0 adds
    nothing to the w and v components and the same c-component on both sides)."""
    net = gengrad.Network((1, 1, 1), "relu")
    return net, np.array([0.5, b, 1.0, 0.0]), np.array([[0.0], [1.0]]), np.array([[-1.0], [1.0]])


def reduced_sliding_flow(wvc0, times):
    def field(_, p):
        w, v, c = p
        r1 = v * w + c - 1
        return [-r1 * v, -r1 * w, -((c + 1) + r1)]
    return solve_ivp(field, (times[0], times[-1]), wvc0, method="DOP853", rtol=1e-13,
                     atol=1e-15, t_eval=times).y.T


def test_hand_derived_sliding_motion():
    net, theta0, X, Y = hand_problem()
    times = np.linspace(0, 5, 11)
    result = gengrad.flow(net, theta0, X, Y, 5.0, t_eval=times, **TIGHT)
    assert event_tuples(result) == [("sliding-start", (1, 0, 0))] and result.events[0].t == 0
    assert np.max(np.abs(result.theta[:, 1])) <= 1e-15           # b = 0: no chattering, no drift
    expected = reduced_sliding_flow(theta0[[0, 2, 3]], times)
    assert np.max(np.abs(result.theta_eval[:, [0, 2, 3]] - expected)) < 1e-10
    w, v, c = result.theta_eval[:, [0, 2, 3]].T
    alpha = -(v * w + c - 1) / (c + 1)                             # stays inside [0, 1]
    assert np.all((alpha > 0) & (alpha < 1))


def test_flow_arrives_at_surface_and_slides():
    net, theta0, X, Y = hand_problem(b=0.2)
    result = assert_matches_reference(net, theta0, X, Y, 3.0)
    assert event_tuples(result) == [("sliding-start", (1, 0, 0))]
    t_slide = result.events[0].t
    assert np.max(np.abs(result.theta[result.t > t_slide, 1])) <= 1e-15


def test_sliding_ends_where_alpha_leaves_the_interval():
    net = gengrad.Network((1, 1, 1), "relu")
    X, Y = np.array([[0.8], [-1.5], [-0.9]]), np.array([[0.4], [-0.9], [1.9]])
    theta0 = np.array([0.7, 1.4, 1.2, 0.9])
    result = assert_matches_reference(net, theta0, X, Y, 3.0)
    assert event_tuples(result) == [("sliding-start", (1, 1, 0)), ("sliding-end", (1, 1, 0))]
    flow = gengrad.flow(net, theta0, X, Y, 3.0, dense_output=True, **TIGHT)
    start, end = (e.t for e in flow.events)
    z = [reference.pre_activations(flow.sol(t), net.widths, net.activation, X)[0][1, 0]
         for t in np.linspace(start, end, 20)]
    assert np.max(np.abs(z)) <= 1e-14


def test_coincident_surfaces_slide_together():
    """A duplicated sample gives two units with one switching function: the flow must be the
    flow with the sample once at the summed weight (the risks differ by a constant)."""
    net, theta0, X, Y = hand_problem()
    once = gengrad.flow(net, theta0, X, Y, 3.0, **TIGHT)
    X2, Y2 = np.array([[0.0], [0.0], [1.0]]), np.array([[-0.5], [-1.5], [1.0]])
    twice = gengrad.flow(net, theta0, X2, Y2, 3.0, sample_weight=np.array([0.25, 0.25, 0.5]),
                         **TIGHT)
    assert event_tuples(twice) == [("sliding-start", (1, 0, 0)), ("sliding-start", (1, 1, 0))]
    assert np.max(np.abs(twice.theta_final - once.theta_final)) < 1e-12


def test_return_right_after_a_crossing_is_found_at_default_tolerance():
    """Random data: at t = 2.664 unit (8, 14) crosses with a tiny normal velocity and comes back
    0.019 later to slide; at rtol 1e-8 the whole excursion lies in the first node interval of
    the restarted step, where the unit starts on its boundary (regression: it was missed, and
    the flow went another way, 7e-2 off by t = 50)."""
    net = gengrad.Network((1, 16, 1), "relu")
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(64, 1)), rng.normal(size=(64, 1))
    theta0 = net.init(seed=0, scheme="torch")
    result = gengrad.flow(net, theta0, X, Y, 4.0)
    expected, events = piecewise_flow(net, theta0, X, Y, 4.0)
    assert event_tuples(result) == [(kind, tuple(int(i) for i in unit)) for _, kind, unit in events]
    assert ("sliding-start", (1, 8, 14)) in event_tuples(result)
    assert np.max(np.abs(result.theta_final - expected)) < 1e-7


def test_start_on_kinks_matches_reference():
    """Integer theta and data: three pre-activations start exactly at relu's kink."""
    rng = np.random.default_rng(3)
    net = gengrad.Network((2, 3, 1), "relu")
    theta0 = rng.integers(-2, 3, net.dim).astype(float)
    X = rng.integers(-2, 3, (6, 2)).astype(float)
    Y = rng.integers(-2, 3, (6, 1)).astype(float)
    assert net.kink_counts(theta0, X).tolist() == [3]
    result = gengrad.flow(net, theta0, X, Y, 3.0, **TIGHT)
    expected, _ = piecewise_flow(net, theta0, X, Y, 3.0)
    assert np.max(np.abs(result.theta_final - expected)) < 1e-10


def test_convention_does_not_change_a_generic_flow():
    """The Filippov flow does not depend on relu'(0) (only a start on a repelling kink does)."""
    X, Y = sine_data(16)
    left, right = gengrad.Network((1, 6, 1), "relu"), gengrad.Network((1, 6, 1), "relu", convention=1.0)
    theta0 = left.init(seed=5, scheme="torch")
    a, b = gengrad.flow(left, theta0, X, Y, 5.0), gengrad.flow(right, theta0, X, Y, 5.0)
    assert len(a.events) > 0 and np.array_equal(a.theta_final, b.theta_final)


@pytest.fixture(scope="module")
def relu_1_16_1():
    """The benchmark's problem, to t = 20: many crossings and some sliding."""
    net = gengrad.Network((1, 16, 1), "relu")
    X = np.linspace(-1, 1, 64)[:, None]
    theta0 = net.init(seed=0)
    return net, theta0, X, np.sin(3 * X), gengrad.flow(net, theta0, X, np.sin(3 * X), 20.0,
                                                       dense_output=True)


def test_risk_is_non_increasing(relu_1_16_1):
    *_, result = relu_1_16_1
    assert result.success and len(result.events) > 50
    assert np.all(np.diff(result.risk) <= 1e-14 * result.risk[0])


def test_events_are_located(relu_1_16_1):
    """At each crossing the unit's pre-activation is at the kink, on the old side just before
    and on the new side just after."""
    net, _, X, _, result = relu_1_16_1
    crossings = [e for e in result.events if e.kind == "crossing"]
    assert len(crossings) > 50
    for e in crossings:
        def z(t, e=e):
            return reference.pre_activations(result.sol(t), net.widths, net.activation,
                                             X)[e.layer - 1][e.sample, e.neuron]
        assert abs(z(e.t)) <= 1e-12
        before, after = z(max(e.t - 1e-7, 0)), z(min(e.t + 1e-7, result.t_end))
        assert (before > 0) == (e.from_piece == 1) and (after > 0) == (e.to_piece == 1)


def test_dense_output_and_t_eval_agree_with_steps(relu_1_16_1):
    net, theta0, X, Y, result = relu_1_16_1
    assert np.max(np.abs(result.sol(result.t) - result.theta)) < 1e-13
    times = np.linspace(0, 20, 9)
    again = gengrad.flow(net, theta0, X, Y, 20.0, t_eval=times, save_steps=False)
    assert len(again.t) == 0 and again.theta_eval.shape == (9, net.dim)
    assert np.max(np.abs(again.theta_eval - result.sol(times))) < 1e-13
    assert np.allclose(again.risk_eval, [net.risk(th, X, Y) for th in again.theta_eval],
                       rtol=1e-13)
    assert np.array_equal(again.theta_final, result.theta_final)


def test_deterministic(relu_1_16_1):
    net, theta0, X, Y, result = relu_1_16_1
    again = gengrad.flow(net, theta0, X, Y, 20.0, dense_output=True)
    assert np.array_equal(again.theta, result.theta) and again.events == result.events


def test_errors_shrink_with_the_tolerance():
    net = gengrad.Network((1, 8, 1), "relu")
    X, Y = sine_data(32)
    theta0 = net.init(seed=1)
    exact = gengrad.flow(net, theta0, X, Y, 10.0, **TIGHT).theta_final
    errors = [np.max(np.abs(gengrad.flow(net, theta0, X, Y, 10.0, rtol=rtol,
                                         atol=rtol / 100).theta_final - exact))
              for rtol in (1e-5, 1e-7, 1e-9)]
    assert errors[0] > errors[1] > errors[2] and errors[2] < 1e-8


def test_summary_and_counts(relu_1_16_1):
    *_, result = relu_1_16_1
    text = result.summary()
    assert "events" in text and str(result.n_gradient_evaluations) in text
    assert sum(result.event_counts().values()) == len(result.events)
    assert result.n_steps > 0 and result.n_gradient_evaluations > 6 * result.n_steps


def test_max_steps_reports_failure():
    net = gengrad.Network((1, 4, 1), "relu")
    X, Y = sine_data()
    result = gengrad.flow(net, net.init(seed=3), X, Y, 10.0, max_steps=3)
    assert not result.success and "max_steps" in result.message and result.n_steps == 3


# --- bad input -------------------------------------------------------------------------------

@pytest.mark.parametrize("change,error,match", [
    (dict(net="relu"), TypeError, "net must be a gengrad.Network"),
    (dict(theta0=np.zeros(7, np.float32)), TypeError, "theta0 must be a float64"),
    (dict(theta0=[0.0] * 6), ValueError, "theta0 must have shape"),
    (dict(theta0=np.zeros(6)), ValueError, "theta0 must have shape"),
    (dict(theta0=np.full(7, np.nan)), ValueError, "theta0 contains NaN"),
    (dict(X=np.zeros((8, 2))), ValueError, "X must have shape"),
    (dict(X=np.zeros((8, 1), np.float32)), TypeError, "X has dtype float32"),
    (dict(X=np.zeros((0, 1)), Y=np.zeros((0, 1))), ValueError, "at least one sample"),
    (dict(Y=np.zeros((5, 1))), ValueError, "Y must have shape"),
    (dict(t_end=-1.0), ValueError, "t_end must be a number >= 0"),
    (dict(t_end="1"), TypeError, "t_end must be a number >= 0"),
    (dict(t_end=float("nan")), ValueError, "t_end"),
    (dict(gtol=-1.0), ValueError, "gtol"),
    (dict(method="rk4"), ValueError, "method must be one of"),
    (dict(rtol=-1e-8), ValueError, "rtol"),
    (dict(rtol=1e-16), ValueError, "rtol must be at least"),
    (dict(atol=float("inf")), ValueError, "atol"),
    (dict(t_eval=[0.5, 0.2]), ValueError, "t_eval"),
    (dict(t_eval=[2.0]), ValueError, "t_eval"),
    (dict(event_nodes=0), ValueError, "event_nodes"),
    (dict(max_steps=1.5), TypeError, "max_steps"),
    (dict(sample_weight=-np.ones(8)), ValueError, "sample_weight must be non-negative"),
    (dict(max_step=0.0), ValueError, "max_step"),
])
def test_bad_input(change, error, match):
    net = gengrad.Network((1, 2, 1), "relu")
    X, Y = sine_data()
    kwargs = dict(net=net, theta0=net.init(seed=0, scheme="torch"), X=X, Y=Y, t_end=1.0)
    kwargs.update(change)
    with pytest.raises(error, match=match):
        gengrad.flow(**kwargs)


def test_t_end_zero_returns_the_initial_state():
    net = gengrad.Network((1, 4, 1), "relu")
    X, Y = sine_data()
    theta0 = net.init(seed=3)
    result = gengrad.flow(net, theta0, X, Y, 0.0, t_eval=[0.0])
    assert result.success and result.n_steps == 0 and result.events == []
    assert np.array_equal(result.theta_final, theta0) and np.array_equal(result.theta_eval[0], theta0)
    assert result.risk_final == pytest.approx(net.risk(theta0, X, Y), rel=1e-15)


def test_theta0_as_a_list_is_taken_like_an_array():
    net = gengrad.Network((1, 4, 1), "relu")
    X, Y = sine_data()
    theta0 = net.init(seed=3)
    a = gengrad.flow(net, theta0, X, Y, 1.0)
    b = gengrad.flow(net, theta0.tolist(), X, Y, 1.0)
    assert np.array_equal(a.theta_final, b.theta_final) and a.events == b.events


def test_initial_pieces_follow_the_signs_of_the_pre_activations():
    net = gengrad.Network((1, 5, 3, 1), "relu")
    X, Y = sine_data(8)
    theta0 = net.init(seed=4, scheme="torch")
    result = gengrad.flow(net, theta0, X, Y, 0.5)
    z = np.concatenate(reference.pre_activations(theta0, net.widths, net.activation, X)[:-1], axis=1)
    assert result.initial_pieces.shape == (8, 8)
    assert np.array_equal(result.initial_pieces, (z > 0).astype(np.int8))


def test_gtol_stops_a_stationary_flow_and_reports_it():
    """(1,8,1) on 32 points to t = 1e4: once the field is below gtol the flow stops, says so,
    and reports the final state at every later requested time."""
    net = gengrad.Network((1, 8, 1), "relu")
    X, Y = sine_data(32)
    theta0 = net.init(seed=0, scheme="torch")
    times = [1.0, 1e3, 1e4]
    result = gengrad.flow(net, theta0, X, Y, 1e4, gtol=1e-6, t_eval=times)
    assert result.success and result.stationary and "stationary" in result.message
    assert result.t_final < 1e3 and result.n_steps < 3000
    assert np.array_equal(result.theta_eval[-1], result.theta_final)
    assert result.risk_eval[-1] == result.risk_final
    plain = gengrad.flow(net, theta0, X, Y, result.t_final)
    assert not plain.stationary and np.max(np.abs(plain.theta_final - result.theta_final)) < 1e-9


def test_ensemble_flows_are_bitwise_the_single_flows():
    ensemble = gengrad.Ensemble((1, 6, 1), 5, "relu")
    X, Y = sine_data(16)
    thetas = ensemble.init(seed=2)
    results = gengrad.flow(ensemble, thetas, X, Y, 5.0, dense_output=True)
    assert len(results) == 5
    for theta, result in zip(thetas, results):
        alone = gengrad.flow(ensemble.network, theta, X, Y, 5.0, dense_output=True)
        assert result.success and len(result.events) > 0
        assert np.array_equal(result.theta, alone.theta) and result.events == alone.events
        assert np.array_equal(result.theta_final, alone.theta_final)


def test_ensemble_flows_with_data_per_network():
    ensemble = gengrad.Ensemble((1, 4, 1), 3, "relu")
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(3, 8, 1)), rng.normal(size=(3, 8, 1))
    thetas = ensemble.init(seed=1)
    results = gengrad.flow(ensemble, thetas, X, Y, 2.0)
    for i, result in enumerate(results):
        alone = gengrad.flow(ensemble.network, thetas[i], X[i], Y[i], 2.0)
        assert np.array_equal(result.theta_final, alone.theta_final)
    with pytest.raises(ValueError, match="theta0 must have shape"):
        gengrad.flow(ensemble, thetas[:2], X, Y, 1.0)


@pytest.mark.parametrize("method", ["dop853", "dopri5"])
def test_both_runge_kutta_pairs_match_the_reference(method):
    net = gengrad.Network((1, 4, 1), "relu")
    X, Y = sine_data()
    theta0 = net.init(seed=3)
    result = gengrad.flow(net, theta0, X, Y, 10.0, method=method, dense_output=True, **TIGHT)
    expected, events = piecewise_flow(net, theta0, X, Y, 10.0)
    assert result.success and event_tuples(result) == [(k, tuple(int(i) for i in u)) for _, k, u in events]
    assert np.max(np.abs(result.theta_final - expected)) <= 1e-9
    assert np.max(np.abs(result.sol(result.t) - result.theta)) < 1e-12


def test_automatic_method_takes_the_cheaper_pair_where_events_are_dense():
    """(2,16,1) on 256 Gaussian samples: a crossing in most steps, where DOPRI5's six
    evaluations a step beat DOP853's fifteen at the same accuracy."""
    net = gengrad.Network((2, 16, 1), "relu")
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(256, 2)), rng.normal(size=(256, 1))
    theta0 = net.init(seed=0, scheme="torch")
    auto = gengrad.flow(net, theta0, X, Y, 2.0)
    high = gengrad.flow(net, theta0, X, Y, 2.0, method="dop853")
    assert auto.n_gradient_evaluations < 0.7 * high.n_gradient_evaluations
    assert np.max(np.abs(auto.theta_final - high.theta_final)) < 1e-6


@pytest.mark.parametrize("rtol", [1e-6, 1e-8])
def test_long_flows_near_stationary_points_do_not_chatter(rtol):
    """(1,8,1) on 32 points to t = 1000, past the point where the risk stops changing: sliding
    starts and ends stay few (the hysteresis band and the drift tolerance), at loose tolerances
    too (the integrator used to leave and re-enter surfaces thousands of times there)."""
    net = gengrad.Network((1, 8, 1), "relu")
    X, Y = sine_data(32)
    for seed in range(3):
        result = gengrad.flow(net, net.init(seed=seed, scheme="torch"), X, Y, 1000.0, rtol=rtol, atol=rtol / 100,
                              save_steps=False)
        assert result.success, result.message
        assert result.event_counts()["sliding-start"] <= 30
