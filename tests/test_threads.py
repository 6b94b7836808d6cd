"""The thread runtime (cpp/cpu/parallel.cpp, gengrad.threads): counts changed from any thread at
any time, counts out of range, fork and spawn children, threadpoolctl, and results bitwise the
same for every count. The calls here are large enough to be split (at least 1e6 multiply-adds;
smaller ones stay on one thread), so the pool really runs them."""
from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import gengrad

WIDTHS = (8, 64, 64, 1)  # 2048 samples: 9.5e6 multiply-adds a pass, 32 chunks of 64 samples


def problem(seed=0, M=2048):
    net = gengrad.Network(WIDTHS, "relu")
    rng = np.random.default_rng(seed)
    X = rng.integers(-2, 3, size=(M, WIDTHS[0])).astype(float)  # integer data: units on kinks too
    return net, net.init(seed=seed), X, rng.normal(size=(M, 1))


@pytest.fixture
def restore_threads():
    before = gengrad.get_num_threads()
    yield
    gengrad.set_num_threads(before)


def test_results_are_bitwise_the_same_for_every_count(restore_threads):
    net, theta, X, Y = problem()
    ensemble = gengrad.Ensemble(WIDTHS, 5, "relu")
    thetas = ensemble.init(seed=1)
    results = []
    for n in (1, 2, 3, 8, 64):
        gengrad.set_num_threads(n)
        results.append((net.risk_and_gradient(theta, X, Y), net.kink_counts(theta, X), net.forward(theta, X),
                        ensemble.risk_and_gradient(thetas, X[:300], Y[:300])))
    for other in results[1:]:
        for a, b in zip(results[0], other):
            for x, y in zip(a if isinstance(a, tuple) else (a,), b if isinstance(b, tuple) else (b,)):
                assert np.array_equal(x, y)


def test_counts_changed_by_other_threads_during_calls(restore_threads):
    """Four threads call the core (single networks, ensembles, a flow) while another sets the
    count to 1..8 as fast as it can: every result is bitwise the serial one. The runtime used to
    size scratch with the count at a call's start and read it again per block: wrong results
    and heap corruption."""
    net, theta, X, Y = problem(M=9000)  # three blocks of samples
    ensemble = gengrad.Ensemble(WIDTHS, 4, "relu")
    thetas = ensemble.init(seed=2)
    flow_net = gengrad.Network((1, 16, 1), "relu")
    xs = np.linspace(-1, 1, 64)[:, None]
    gengrad.set_num_threads(1)
    expected = {"single": net.risk_and_gradient(theta, X, Y)[1],
                "ensemble": ensemble.risk_and_gradient(thetas, X[:500], Y[:500])[1],
                "flow": gengrad.flow(flow_net, flow_net.init(seed=0), xs, np.sin(3 * xs), 2.0,
                                     save_steps=False).theta_final}
    calls = {"single": lambda: net.risk_and_gradient(theta, X, Y)[1],
             "ensemble": lambda: ensemble.risk_and_gradient(thetas, X[:500], Y[:500])[1],
             "flow": lambda: gengrad.flow(flow_net, flow_net.init(seed=0), xs, np.sin(3 * xs), 2.0,
                                          save_steps=False).theta_final}
    stop = threading.Event()

    def churn():
        n = 0
        while not stop.is_set():
            gengrad.set_num_threads(n % 8 + 1)
            n += 1

    def caller(name):
        return all(np.array_equal(calls[name](), expected[name]) for _ in range(15))

    changer = threading.Thread(target=churn)
    changer.start()
    try:
        with cf.ThreadPoolExecutor(4) as pool:
            outcomes = list(pool.map(caller, ["single", "ensemble", "single", "flow"]))
    finally:
        stop.set()
        changer.join()
    assert outcomes == [True] * 4


def test_results_beside_processes_that_take_the_cores(restore_threads):
    """Processes spinning on every core preempt the pool's threads, which usually stops the
    helpers' spinning (they then sleep between jobs and are woken by each; nothing here checks
    which path ran); then the neighbours leave. Every call on 2 and 3 threads, during and after,
    returns the serial result."""
    net, theta, X, Y = problem()
    gengrad.set_num_threads(1)
    serial = net.risk_and_gradient(theta, X, Y)
    neighbours = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 1)]
    try:
        time.sleep(0.2)
        for n in (2, 3) * 15:
            gengrad.set_num_threads(n)
            risk, grad = net.risk_and_gradient(theta, X, Y)
            assert risk == serial[0] and np.array_equal(grad, serial[1])
    finally:
        for process in neighbours:
            process.kill()
            process.wait()
    gengrad.set_num_threads(2)
    for _ in range(20):
        risk, grad = net.risk_and_gradient(theta, X, Y)
        assert risk == serial[0] and np.array_equal(grad, serial[1])


@pytest.mark.parametrize("bad", [0, -1, 1025, 100_000, 2**31 - 1, 2**70])
def test_counts_out_of_range_are_refused(bad, restore_threads):
    with pytest.raises(ValueError, match=f"n must be an integer from 1 to {gengrad.threads.MAX_THREADS}"):
        gengrad.set_num_threads(bad)
    with pytest.raises(TypeError, match="n must be an integer"):
        gengrad.set_num_threads(2.0)


def test_the_largest_count_runs(restore_threads):
    """MAX_THREADS threads asked for: a call uses at most one per task (here 32 chunks)."""
    net, theta, X, Y = problem()
    gengrad.set_num_threads(1)
    expected = net.risk_and_gradient(theta, X, Y)[1]
    gengrad.set_num_threads(gengrad.threads.MAX_THREADS)
    assert np.array_equal(net.risk_and_gradient(theta, X, Y)[1], expected)


def run_python(code, **env):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **env})


@pytest.mark.parametrize("value", ["abc", "0", "-3", "2.5", "99999999999", "1025", "4x"])
def test_environment_variable_out_of_range_fails_the_import_naming_it(value):
    done = run_python("import gengrad", GENGRAD_NUM_THREADS=value)
    assert done.returncode != 0
    assert f"GENGRAD_NUM_THREADS='{value}': expected an integer from 1 to" in done.stderr


@pytest.mark.parametrize("variable, value, message", [
    ("GENGRAD_NUM_THREADS", "abc", "expected an integer from 1 to 1024"),
    ("GENGRAD_ISA", "avx3", "unknown isa 'avx3'; expected 'auto' or one of "),
])
def test_the_command_reports_a_bad_environment_variable_in_one_line(variable, value, message):
    command = shutil.which("gengrad", path=os.path.dirname(sys.executable))
    if command is None:
        pytest.skip("the gengrad command is not installed beside this Python")
    done = subprocess.run([command, "info"], capture_output=True, text=True, timeout=120,
                          env={**os.environ, variable: value})
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith(f"gengrad: {variable}='{value}': {message}") and done.stderr.count("\n") == 1


@pytest.mark.parametrize("module", ["gengrad", "gengrad.cli"])
def test_python_m_reports_a_bad_environment_variable_in_one_line(module):
    """Under `python -m` the package loads while argv[0] is "-m"; a newline in the value stays
    escaped, so the report is one line."""
    done = subprocess.run([sys.executable, "-m", module, "info"], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "GENGRAD_ISA": "avx3\n"})
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == ("gengrad: GENGRAD_ISA='avx3\\n': unknown isa 'avx3\\n'; expected 'auto' or one of "
                           + ", ".join(gengrad.build_info()["isas_built"]) + "\n")


@pytest.mark.parametrize("value", ["3", " 3", "3 "])
def test_environment_variable_sets_the_count(value):
    done = run_python("import gengrad; print(gengrad.get_num_threads())", GENGRAD_NUM_THREADS=value)
    assert done.returncode == 0 and done.stdout.strip() == "3", done.stderr


def test_the_count_is_read_at_import():
    code = "import os, gengrad; os.environ['GENGRAD_NUM_THREADS'] = 'bogus'; print(gengrad.get_num_threads())"
    done = run_python(code, GENGRAD_NUM_THREADS="2")
    assert done.returncode == 0 and done.stdout.strip() == "2", done.stderr


def gradient_in_child(seed):
    net, theta, X, Y = problem(seed)
    gengrad.set_num_threads(2)
    return net.risk_and_gradient(theta, X, Y)[1]


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_children_compute_after_the_parent_used_its_pool(method, restore_threads):
    """A forked child's copy of the pool has no threads: it makes a new one (the OpenMP runtime
    deadlocked there)."""
    gengrad.set_num_threads(2)
    expected = [gradient_in_child(seed) for seed in range(3)]  # the parent's pool now exists
    pool = multiprocessing.get_context(method).Pool(2)
    try:  # a deadlocked child fails the test instead of hanging it
        results = pool.map_async(gradient_in_child, range(3)).get(timeout=120)
    finally:
        pool.terminate()
    assert all(np.array_equal(a, b) for a, b in zip(results, expected))


def exit_code_within(pid, seconds):
    """The child's exit code, or None after killing it if it has not ended within `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return None


def test_a_fork_in_the_middle_of_parallel_calls_of_another_thread(restore_threads):
    """fork() while another thread is inside a parallel call: the child's copies of the pool's
    locks may be held, so it must not use them."""
    gengrad.set_num_threads(2)
    net, theta, X, Y = problem()
    expected = net.risk_and_gradient(theta, X, Y)[1]
    stop = threading.Event()

    def busy():
        while not stop.is_set():
            net.risk_and_gradient(theta, X, Y)

    worker = threading.Thread(target=busy)
    worker.start()
    try:
        for _ in range(5):
            pid = os.fork()
            if pid == 0:  # the child: exit code 0 if the gradient is right
                ok = np.array_equal(net.risk_and_gradient(theta, X, Y)[1], expected)
                os._exit(0 if ok else 1)
            assert exit_code_within(pid, 60) == 0
    finally:
        stop.set()
        worker.join()


def sweep_job(config):
    net, theta, X, Y = problem(config["seed"])
    return {"gradient": net.risk_and_gradient(theta, X, Y)[1], "threads": gengrad.get_num_threads()}


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_sweeps_with_several_threads_per_job(method, restore_threads):
    gengrad.set_num_threads(2)
    gradient_in_child(0)
    context = multiprocessing.get_context(method)
    with cf.ProcessPoolExecutor(2, mp_context=context) as pool:
        table = gengrad.sweep(sweep_job, [{"seed": s} for s in range(4)], pool, threads_per_job=2)
    for seed, gradient, threads in zip(table["seed"], table["gradient"], table["threads"]):
        assert threads == 2 and np.array_equal(gradient, gradient_in_child(int(seed)))


def test_threadpoolctl_sees_and_limits_the_pool(restore_threads):
    threadpoolctl = pytest.importorskip("threadpoolctl")
    gengrad.set_num_threads(2)
    [info] = [lib for lib in threadpoolctl.threadpool_info() if lib["user_api"] == "gengrad"]
    assert info["num_threads"] == 2 and info["version"] == gengrad.__version__
    with threadpoolctl.threadpool_limits(limits=1):
        assert gengrad.get_num_threads() == 1
    assert gengrad.get_num_threads() == 2
    with threadpoolctl.threadpool_limits(limits=1, user_api="gengrad"):
        assert gengrad.get_num_threads() == 1
    assert gengrad.get_num_threads() == 2


def test_a_thread_limit_caps_and_never_raises_the_count(restore_threads):
    gengrad.set_num_threads(1)
    with gengrad.threads.limit(4):
        assert gengrad.get_num_threads() == 1
    gengrad.set_num_threads(3)
    with gengrad.threads.limit(2):
        assert gengrad.get_num_threads() == 2
        net, theta, X, Y = problem()
        expected = net.risk_and_gradient(theta, X, Y)[1]
    assert gengrad.get_num_threads() == 3
    assert np.array_equal(net.risk_and_gradient(theta, X, Y)[1], expected)


def test_ctrl_c_stops_an_ensemble_of_flows_on_several_threads(restore_threads):
    """The calling thread checks for Ctrl-C also while it waits for the helpers' flows (it has
    finished its own): a long flow on a helper used to run on, Ctrl-C unseen."""
    code = """
import os, signal, threading, time, numpy as np, gengrad
gengrad.set_num_threads(2)
ensemble = gengrad.Ensemble((1, 16, 1), 2, "relu")
X = np.linspace(-1, 1, 64)[:, None]
thetas = ensemble.init(seed=0)
thetas[0] = 0.0  # with targets 0, a stationary start: the first flow (the caller's) ends at once
Y = np.stack([0 * X, np.sin(3 * X)])
threading.Timer(1.0, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
start = time.monotonic()
try:
    gengrad.flow(ensemble, thetas, X, Y, 1e9, rtol=1e-12, atol=1e-14, save_steps=False, gtol=1e-300)
    print("finished", time.monotonic() - start)
except KeyboardInterrupt:
    print("interrupted", time.monotonic() - start)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    words = done.stdout.split()
    assert words and words[0] == "interrupted" and float(words[1]) < 10, (done.stdout, done.stderr)
