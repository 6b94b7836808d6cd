"""10^5 calls (successful and refused ones, with and without ``out``, ensembles) leave the
resident memory where it was after a warm-up: nothing leaks per call. The workspace of a wide
network is its activations, not scratch sized by its widest layer."""
import os
import resource
import subprocess
import sys

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


# gengrad.workspace_bytes() only grows within a process, so each measurement runs in a fresh one.
WORKSPACE_OF = """
import sys
import numpy as np
import gengrad
width, threads = int(sys.argv[1]), int(sys.argv[2])
gengrad.set_num_threads(threads)
net = gengrad.Network((1, width, 1))
X = np.linspace(-1.0, 1.0, 3)[:, None]
net.gradient(net.init(0), X, X)
print(gengrad.workspace_bytes())
"""


def workspace_after(script, *args):
    """gengrad.workspace_bytes() as `script` prints it in a fresh process, given args."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, sys.path)))
    run = subprocess.run([sys.executable, "-c", script, *map(str, args)], env=env,
                         capture_output=True, text=True, timeout=120, check=True)
    return int(run.stdout)


def test_wide_network_workspace_is_its_activations():
    """(1, 10^6, 1) on 3 samples packs no panel (packing needs >= 16 rows and depth >= 64): the
    workspace holds the block's activations, 2 * 10^6 + 2 values per sample column, the columns
    padded to one vector step (at most 128 bytes), whatever the thread count. It used to add
    10^6 x 64 values of packing scratch per thread (512 MB each in float64)."""
    width = 10**6
    one, four = workspace_after(WORKSPACE_OF, width, 1), workspace_after(WORKSPACE_OF, width, 4)
    activations = (2 * width + 2) * 128
    assert one == four
    assert 3 * (2 * width + 2) * 8 <= one <= activations + 4096
    assert one < width * 64 * 8


PANEL_WORKSPACE_OF = """
import sys
import numpy as np
import gengrad
gengrad.select_weight_panels(sys.argv[1])
gengrad.set_num_threads(2)
widths = (70, 300, 64, 3)
net = gengrad.Network(widths)
X = np.ones((700, 70), np.float32)
net.gradient(net.init(0, np.float32), X, np.ones((700, 3), np.float32))
print(gengrad.workspace_bytes())
"""


def test_a_copy_of_the_weight_panels_per_worker_holds_one_more_copy_on_two_threads():
    """The weight panels of (70, 300, 64, 3) at 700 samples: W_1 (300 x 70) and W_2 (64 x 300)
    forward, W_2^T backward, 59400 float32 values, rounded up to whole 64-byte vectors. With a
    copy per worker two threads hold two copies, with one shared copy one (the policy is
    applied, not only accepted); the buffer itself is rounded to 64 bytes."""
    held = {policy: workspace_after(PANEL_WORKSPACE_OF, policy) for policy in ("per_worker", "shared")}
    one_copy = -(-59400 * 4 // 64) * 64
    assert abs(held["per_worker"] - held["shared"] - one_copy) < 64
