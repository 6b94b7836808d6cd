"""The cross-implementation suite: one table of cases, run against every backend of
tests/backends.py (gengrad's core once per kernel build the CPU runs, gengrad's reference
backend, PyTorch autograd and JAX when installed) and held to the float64 reference.

A case is an activation with a convention, a loss, a dtype and a kind of data (continuous random,
or integers that put pre-activations exactly on kinks); each runs on every architecture and
batch size of ARCHITECTURES (batch sizes 1 and odd included; sample weights on every other one
in float64; JAX, which compiles per shape, on two of them). A peer is compared under its own
convention at the kinks (backends.py says which); where that is not a one-sided derivative
only kink-free data is compared, and
test_peer_conventions.py shows the difference. Hypothesis adds generated cases.
"""
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backends import BACKENDS, peer_activation
from conftest import ACTIVATION_IDS, ACTIVATIONS, kink_problem, random_problem, relative_error
from gengrad import activations as A
from gengrad import reference as R
from gengrad.verify import rounding_scales

ARCHITECTURES = [((1, 16, 16, 1), 1), ((3, 5, 2), 7), ((4, 1, 3), 64), ((2, 3, 4, 3, 5, 2), 130),
                 ((5, 17, 9, 3), 33), ((3, 6, 5, 2), 40)]
LOSSES = ("squared_error", "cross_entropy")
DTYPES = (np.float64, np.float32)
DATA = ("random", "kink")
# measured: errors reach 0.7 of rounding_scales' bound (torch float32), gengrad's 0.5
ROUNDING = 4


@dataclass(frozen=True)
class Case:
    activation: object
    convention: object
    loss: str
    dtype: type
    data: str

    @property
    def act(self) -> A.Activation:
        return A.get(self.activation, self.convention)

    @property
    def tolerance(self) -> float:
        """Relative error allowed against the float64 reference (at float32-rounded inputs)."""
        if self.dtype == np.float64:
            return 1e-12
        exact = self.data == "kink" and self.act.piecewise_linear and self.loss == "squared_error"
        # integer data: every product and sum is exact in float32; only the weighting rounds
        return 1e-6 if exact else 1e-5

    def problem(self, widths, M, seed, weighted):
        """(theta, X, Y, sample_weight); weights only in float64."""
        make = kink_problem if self.data == "kink" else random_problem
        theta, X, Y = make(widths, M, seed, self.loss, self.dtype)
        weighted = weighted and self.dtype == np.float64
        weight = np.random.default_rng(seed).uniform(0.0, 2.0, size=M) if weighted else None
        return theta, X, Y, weight

    def problems(self, rows=None):
        """(widths, theta, X, Y, sample_weight) for the given rows of ARCHITECTURES, weighted on
        every other one."""
        for i in range(len(ARCHITECTURES)) if rows is None else rows:
            widths, M = ARCHITECTURES[i]
            yield (widths, *self.problem(widths, M, seed=i, weighted=i % 2))


CASES = [Case(activation, convention, loss, dtype, data)
         for activation, convention in ACTIVATIONS for loss in LOSSES for dtype in DTYPES
         for data in DATA]
CASE_IDS = [f"{name}-{case.loss}-{case.dtype.__name__}-{case.data}"
            for name in ACTIVATION_IDS for case in CASES[:len(LOSSES) * len(DTYPES) * len(DATA)]]
PAIRS = [pytest.param(case, backend, id=f"{backend.name}-{case_id}")
         for case, case_id in zip(CASES, CASE_IDS) for backend in BACKENDS
         if case.dtype in backend.dtypes]


def _compared_activation(case: Case, backend):
    """The activation with the backend's convention, or skip when the comparison is undefined."""
    reason = backend.available()
    if reason:
        pytest.skip(reason)
    act = peer_activation(backend, case.act)
    if act is not None:
        return act
    if case.data == "kink":
        pytest.skip(f"{backend.name}'s derivative of {case.act.name} at a kink, "
                    f"{backend.kink_values(case.act)}, is not one-sided (test_peer_conventions)")
    return case.act      # no kink is hit: every convention gives the same G


def _assert_agrees(case: Case, backend, act, widths, theta, X, Y, weight, well_conditioned=True):
    """The backend's results within ROUNDING units of roundoff of rounding_scales' error bound;
    on the table's ``well_conditioned`` problems also within ``case.tolerance`` relative error.
    Generated problems can cancel (hypothesis found torch's float64 cross-entropy of 5.6e-9 off
    by 8e-8 relative, and its float32 gelu G on integer data off by 1.4e-5): only the bound."""
    result = backend.evaluate(widths, act, case.loss, theta, X, Y, weight)
    # the float64 reference at the (float32-rounded) inputs: what the arithmetic approximates
    t, x, y = (a.astype(np.float64) for a in (theta, X, Y))
    kwargs = dict(loss=case.loss, sample_weight=weight)
    assert result.G.dtype == case.dtype
    unit = ROUNDING * np.finfo(case.dtype).eps
    z_errors, risk_error, G_error = rounding_scales(t, widths, act, x, y, **kwargs)
    risk = R.risk(t, widths, act, x, y, **kwargs)
    G = R.generalized_gradient(t, widths, act, x, y, **kwargs)
    assert abs(result.risk - risk) <= unit * risk_error
    assert np.linalg.norm(result.G - G) <= unit * np.linalg.norm(G_error)
    if well_conditioned:
        assert relative_error(result.risk, risk) <= case.tolerance
        assert relative_error(result.G, G) <= case.tolerance
    expected = R.pre_activations(t, widths, act, x)
    assert len(result.pre_activations) == len(expected)
    for z, z_ref, z_error in zip(result.pre_activations, expected, z_errors):
        if case.data == "kink" and act.piecewise_linear:   # integers, dyadic slopes: exact
            np.testing.assert_array_equal(z, z_ref)
        assert np.linalg.norm(z - z_ref) <= unit * np.linalg.norm(z_error)
    counts = R.kink_counts(t, widths, act, x)
    kinks = np.asarray(act.kinks, dtype=case.dtype)
    seen = [int(np.isin(z, kinks).sum()) for z in result.pre_activations[:-1]]
    np.testing.assert_array_equal(seen, counts)
    if result.kink_counts is not None:
        np.testing.assert_array_equal(result.kink_counts, counts)


@pytest.mark.parametrize("case,backend", PAIRS)
def test_backend_agrees_with_the_reference(case, backend):
    act = _compared_activation(case, backend)
    # a backend that compiles per shape runs the deep odd batch and the single sample
    rows = (3, 0) if backend.compiles_per_shape else range(len(ARCHITECTURES))
    for widths, theta, X, Y, weight in case.problems(rows):
        _assert_agrees(case, backend, act, widths, theta, X, Y, weight)


@pytest.mark.parametrize("activation,convention", ACTIVATIONS, ids=ACTIVATION_IDS)
def test_the_kink_cases_hit_kinks(activation, convention):
    """Without hits the kink rows of the table would test nothing about conventions."""
    act = A.get(activation, convention)
    case = Case(activation, convention, "squared_error", np.float64, "kink")
    hits = sum(R.kink_counts(theta, widths, act, X).sum()
               for widths, theta, X, Y, weight in case.problems())
    assert (hits > 0) == bool(act.kinks)


@settings(max_examples=25, deadline=None)
@given(activation=st.sampled_from(ACTIVATIONS), loss=st.sampled_from(LOSSES),
       dtype=st.sampled_from(DTYPES), data=st.sampled_from(DATA),
       hidden=st.lists(st.integers(1, 6), min_size=1, max_size=3), width_in=st.integers(1, 4),
       width_out=st.integers(1, 4), samples=st.integers(1, 9), seed=st.integers(0, 10 ** 6))
def test_generated_cases_agree_on_every_backend(activation, loss, dtype, data, hidden, width_in,
                                                width_out, samples, seed):
    case = Case(*activation, loss, dtype, data)
    widths = (width_in, *hidden, width_out)
    compared = 0
    for backend in BACKENDS:
        # generated shapes are new every time: not for a backend that compiles per shape
        if dtype not in backend.dtypes or backend.compiles_per_shape or backend.available():
            continue
        act = peer_activation(backend, case.act)
        if act is None and data == "kink":
            continue
        problem = case.problem(widths, samples, seed, weighted=seed % 2)
        _assert_agrees(case, backend, act or case.act, widths, *problem, well_conditioned=False)
        compared += 1
    assert compared >= 1
