"""Fuzzing the Python API: random networks, shapes, dtypes, strides, NaN/Inf, huge sizes and
concurrent calls get a result or a TypeError/ValueError/MemoryError, never a crash, a hang or
another exception; the arrays' layout never changes a result; threads change nothing."""
import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gengrad
from fuzzing import ALLOWED, NumpySource, outcome, random_call, same


class DrawSource:
    def __init__(self, data):
        self.data = data

    def integer(self, lo, hi):
        return self.data.draw(st.integers(lo, hi))

    def real(self):
        return self.data.draw(st.floats(-3, 3))


def check_call(source):
    try:
        call = random_call(source)
    except ALLOWED:
        return None
    twin = call.copied()
    kind, result = outcome(call)
    if call.layout_free:
        twin_kind, twin_result = outcome(twin)
        assert kind == twin_kind, (call.name, result, twin_result)
        assert same(result, twin_result), (call.name, result, twin_result)
    return kind, result


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_random_calls_return_or_raise_clear_errors(data):
    check_call(DrawSource(data))


def test_random_calls_reach_both_outcomes_and_every_method():
    """The generator is not degenerate: it makes calls that succeed and calls that fail, for
    every method (otherwise the fuzz tests would pass vacuously)."""
    seen = set()
    for seed in range(600):
        source = NumpySource(seed)
        try:
            call = random_call(source)
        except ALLOWED:
            seen.add(("network", "error"))
            continue
        seen.add((call.name, outcome(call)[0]))
    names = {name for name, _ in seen}
    assert {"forward", "risk_and_gradient", "approx_gradient", "flatten", "init", "kink_counts",
            "ensemble.step", "ensemble.risk_and_gradient", "network"} <= names
    for name in ("risk_and_gradient", "approx_gradient", "ensemble.risk_and_gradient"):
        assert {(name, "ok"), (name, "error")} <= seen


def trial(seed):
    try:
        call = random_call(NumpySource(seed))
    except ALLOWED as error:
        return "network error", str(error)
    return outcome(call)


def test_concurrent_random_calls_from_threads_give_the_serial_outcomes():
    seeds = range(300)
    serial = [trial(seed) for seed in seeds]
    stop = threading.Event()
    before = gengrad.get_num_threads()

    def change_thread_counts():  # results do not depend on the thread count
        while not stop.is_set():
            for n in (1, 2, 3):
                gengrad.set_num_threads(n)

    changer = threading.Thread(target=change_thread_counts)
    changer.start()
    try:
        with ThreadPoolExecutor(max_workers=8) as pool:
            futures = [pool.submit(trial, seed) for seed in seeds]
            concurrent = [future.result(timeout=120) for future in futures]  # no hang
    finally:
        stop.set()
        changer.join()
        gengrad.set_num_threads(before)
    for seed, a, b in zip(seeds, serial, concurrent):
        assert a[0] == b[0] and same(a[1], b[1]), seed


@pytest.mark.parametrize("make", [
    lambda: gengrad.Network((10**7, 10**7, 1)).init(0),               # 8e14 parameters
    lambda: gengrad.Network((2, 3, 1)).risk(np.zeros(13), np.broadcast_to(np.zeros(2), (10**12, 2)),
                                              np.zeros((1, 1))),          # 16 TB of X through a view
    lambda: gengrad.Network((2, 3, 1)).forward(np.zeros(13), np.broadcast_to(np.zeros(2), (10**12, 2))),
    lambda: gengrad.Network((2,) * 66),
    lambda: gengrad.Network((2**62, 2**62)),
    lambda: gengrad.Ensemble((2, 3, 1), 2).risk(np.broadcast_to(np.zeros(13), (10**13, 13)),
                                                np.zeros((1, 2)), np.zeros((1, 1))),
])
def test_huge_sizes_get_clear_errors(make):
    with pytest.raises(ALLOWED):
        make()


def test_large_but_feasible_inputs_work():
    net = gengrad.Network((1, 1))
    X = np.broadcast_to(np.ones(1), (3_000_000, 1))  # read through one contiguous copy
    risk = net.risk(np.array([2.0, 1.0]), X, np.broadcast_to(np.zeros(1), (3_000_000, 1)))
    assert risk == pytest.approx(9.0, rel=1e-9)  # 3e6 masses of 1/M


def test_layers_checks_theta():
    net = gengrad.Network((2, 3, 1))
    for theta in (np.zeros(()), np.zeros(5), np.zeros(net.dim + 1), np.zeros((2, net.dim)), [1.0, 2.0]):
        with pytest.raises(ValueError, match=rf"theta must have shape \({net.dim},\), got"):
            net.layers(theta)
    # the same message as the methods the core checks
    with pytest.raises(ValueError, match=rf"theta must have shape \({net.dim},\), got \(5,\)"):
        net.forward(np.zeros(5), np.zeros((1, 2)))


def test_ensemble_methods_check_thetas():
    # Ensemble has no layers(); every method that takes thetas goes through its shape check.
    ens = gengrad.Ensemble((2, 3, 1), 2)
    X, Y = np.zeros((1, 2)), np.zeros((1, 1))
    calls = (lambda t: ens.forward(t, X), lambda t: ens.kink_counts(t, X), lambda t: ens.risk(t, X, Y),
             lambda t: ens.gradient(t, X, Y), lambda t: ens.step(t, X, Y, 0.1))
    for thetas in (np.zeros(()), np.zeros(ens.dim), np.zeros((3, ens.dim)), np.zeros((2, ens.dim + 1))):
        for call in calls:
            with pytest.raises(ValueError, match=rf"thetas must have shape \(2, {ens.dim}\), got"):
                call(thetas.copy())


def test_atheris_finds_no_crash(tmp_path):
    pytest.importorskip("atheris")
    if "libasan" in os.environ.get("LD_PRELOAD", ""):
        pytest.skip("atheris ships its own sanitizer runtime; the sanitizer run uses hypothesis only")
    harness = Path(__file__).with_name("fuzz_atheris.py")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(harness.parent), *sys.path])))
    run = subprocess.run([sys.executable, str(harness), "-runs=3000", "-max_len=512", "-seed=1",
                          f"-artifact_prefix={tmp_path}/"], env=env, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "Done 3000 runs" in run.stderr
