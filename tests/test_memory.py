"""10^5 calls (successful and refused ones, with and without ``out``, ensembles) leave the
resident memory where it was after a warm-up: nothing leaks per call."""
import os
import resource

import numpy as np

import gengrad

CALLS = 100_000
ALLOWED_GROWTH = 4 << 20  # bytes; a leak of 40 bytes per call would exceed it


def resident_bytes() -> int:
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # no /proc: the peak (ru_maxrss, KiB on Linux) bounds the growth too
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def make_calls():
    net = gengrad.Network((3, 16, 16, 2), "relu")
    ens = gengrad.Ensemble((3, 16, 16, 2), 4)
    rng = np.random.default_rng(0)
    theta = net.init(0)
    thetas = ens.init(0)
    X, Y = rng.normal(size=(8, 3)), rng.normal(size=(8, 2))
    bad_X = X.copy()
    bad_X[0, 0] = np.nan
    out = np.empty(net.dim)

    def refused():
        try:
            net.risk_and_gradient(theta, bad_X, Y)
        except ValueError:
            return
        raise AssertionError("NaN in X was accepted")

    return [
        lambda: net.risk_and_gradient(theta, X, Y),
        lambda: net.gradient(theta, X, Y, out=out),
        lambda: net.approx_gradient(theta, X, Y, 100.0),
        lambda: net.forward(theta, X.T.copy().T),  # non-contiguous input: copied each call
        lambda: ens.risk_and_gradient(thetas, X, Y),
        refused,
    ]


def run(calls, n):
    for i in range(n):
        calls[i % len(calls)]()


def test_resident_memory_is_flat_over_100000_calls():
    calls = make_calls()
    run(calls, 5_000)  # warm-up: workspaces, allocator pools
    before = resident_bytes()
    run(calls, CALLS)
    growth = resident_bytes() - before
    assert growth <= ALLOWED_GROWTH, f"resident memory grew by {growth / 2**20:.1f} MiB over {CALLS} calls"


def test_the_check_sees_a_leak():
    """The measurement is sensitive enough: keeping each call's result (~3 KiB) is caught."""
    calls = make_calls()
    run(calls, 1_000)
    before = resident_bytes()
    kept = [calls[0]() for _ in range(5_000)]
    assert resident_bytes() - before > ALLOWED_GROWTH
    del kept
