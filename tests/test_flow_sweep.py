"""gengrad.flow on random problems beyond the designed cases, held to independent oracles
(tests/flow_oracles.py: NumPy only). bench/flow_sweep.py runs the large sweep.

- Replay: the events, replayed from the initial pattern, must describe the trajectory at every
  saved state and at points of the dense output between them, and every event must agree with
  the textbook Filippov field there.
- Euler: theta(t_end) must agree with the h -> 0 limit of explicit gradient descent.

A run may fail (success False), never silently: its message must name the reason, and such runs
must stay rare (degenerate integer problems where the sliding set is not determined to the
tolerance).
"""
import numpy as np
import pytest

import gengrad
from flow_oracles import euler_limit, random_problem, replay

#: The reasons an honest failure may give (cpp/flow): a sliding surface whose exits are within
#: the error of alpha, coupled Filippov weights without a solution, dependent or nearly
#: dependent normals. In 1000 random problems at rtol 1e-6, 1e-8 and 1e-10, 29 of 3000 runs
#: failed so, nearly all with small integer data (bench/flow_sweep.py).
HONEST_FAILURES = ("chatters", "have no solution", "linearly dependent", "does not settle",
                   "events accumulate", "could not be projected")


def sweep(seeds, rtol):
    failed, checked = [], 0
    for seed in seeds:
        problem = random_problem(seed)
        result = gengrad.flow(problem.net, problem.theta0, problem.X, problem.Y, problem.t_end, rtol=rtol,
                              atol=rtol * 1e-2, dense_output=True)
        if not result.success:
            assert any(reason in result.message for reason in HONEST_FAILURES), (problem.name, result.message)
            failed.append(problem.name)
            continue
        violations = replay(problem, result, rtol)
        assert not violations, (problem.name, rtol, violations[:3])
        checked += 1
    return checked, failed


@pytest.mark.parametrize("rtol,seeds", [(1e-8, range(0, 400)), (1e-6, range(400, 500)), (1e-10, range(500, 600))])
def test_random_flows_replay_their_events(rtol, seeds):
    checked, failed = sweep(seeds, rtol)
    assert len(failed) <= 0.03 * len(seeds), failed


@pytest.mark.parametrize("seed", [1, 6, 13, 19, 24, 26])
def test_random_flows_agree_with_the_euler_limit(seed):
    """Continuous random data, 1 to 3 hidden layers, up to 32 samples, several events each."""
    problem = random_problem(seed, max_samples=32, integer=False)
    result = gengrad.flow(problem.net, problem.theta0, problem.X, problem.Y, problem.t_end, rtol=1e-10,
                          atol=1e-12)
    assert result.success, result.message
    expected, error_estimate = euler_limit(problem, 2000)
    error = np.max(np.abs(result.theta_final - expected))
    assert error <= 5 * error_estimate + 1e-6, (problem.name, error, error_estimate)


@pytest.mark.parametrize("widths,M,seed", [((2, 8, 8, 1), 64, 11), ((2, 3, 1), 6, 3), ((1, 2, 1), 5, 4)])
def test_reported_failures_are_fixed(widths, M, seed):
    """The issue's cases: a unit leaving its boundary right after an event ((2,8,8,1), 64
    samples, seed 11: 8.7e-3 off before), and starts exactly on kinks with integer data."""
    net = gengrad.Network(widths, "relu")
    rng = np.random.default_rng(seed)
    if M == 64:
        X, Y = rng.normal(size=(M, widths[0])), rng.normal(size=(M, 1))
        theta0 = net.init(seed=seed, scheme="torch")
        t_end = 3.0
    else:
        theta0 = rng.integers(-2, 3, net.dim).astype(float)
        X = rng.integers(-2, 3, (M, widths[0])).astype(float)
        Y = rng.integers(-2, 3, (M, 1)).astype(float)
        t_end = 1.0
    from flow_oracles import Problem
    problem = Problem("issue", net, theta0, X, Y, t_end)
    for rtol in (1e-6, 1e-8):
        result = gengrad.flow(net, theta0, X, Y, t_end, rtol=rtol, atol=rtol * 1e-2)
        assert result.success, result.message
    # Euler chatters across sliding surfaces, so its Richardson estimate is erratic there: 1e-5
    # is what 8000 to 128000 steps agree to on the integer cases.
    expected, error_estimate = euler_limit(problem, 4000 if M == 64 else 8000)
    assert np.max(np.abs(result.theta_final - expected)) <= 5 * error_estimate + 1e-5
