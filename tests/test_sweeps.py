"""Sweeps: tables equal the jobs' own results, files are written atomically, interrupted sweeps
resume without recomputing, and a Dask worker killed mid-sweep loses nothing."""
import json
import os
import signal
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import gengrad
import sweep_jobs
from gengrad import jobs, sweeps

# ~0.1-0.3 s per job: long enough that a worker is busy when it is killed.
DESCENT = [dict(seed=seed, steps=3000, tol=0.0) for seed in range(10)]
QUICK = [dict(seed=seed, steps=50) for seed in range(6)]


def assert_tables_equal(a, b):
    assert list(a) == list(b)
    for name in a:
        assert a[name].dtype == b[name].dtype, name
        assert np.array_equal(a[name], b[name]), name


@pytest.fixture(scope="module")
def serial_table():
    return gengrad.sweep(jobs.descent_job, DESCENT, "serial")


def test_table_holds_each_jobs_result_in_config_order():
    table = gengrad.sweep(jobs.descent_job, QUICK, "serial")
    assert list(table["seed"]) == [c["seed"] for c in QUICK]
    assert list(table["config_hash"]) == [sweeps.config_hash(c) for c in QUICK]
    for i, config in enumerate(QUICK):
        for name, value in jobs.descent_job(config).items():
            assert table[name][i] == value, name
    assert table["final_risk"].dtype == np.float64 and table["reached_global_minimum"].dtype == bool


def test_descent_job_reaches_the_global_minimum_of_an_easy_problem():
    easy = dict(widths=[2, 16, 1], samples=4, steps=5000, lr=0.1, tol=1e-10)
    result = jobs.descent_job(easy)
    assert result["reached_global_minimum"] and result["final_risk"] <= 1e-10
    assert result["steps_taken"] < 5000 and not result["diverged"]
    assert jobs.descent_job({**easy, "lr": 1e6})["diverged"]


def test_kink_job_counts_agree_with_the_reference():
    result = jobs.kink_job(dict(seed=3))
    rng = np.random.default_rng(3)
    net = gengrad.Network((2, 5, 4, 1))
    theta = rng.integers(-2, 3, net.dim).astype(float)
    X = rng.integers(-2, 3, (8, 2)).astype(float)
    assert np.array_equal(result["kink_hits"], gengrad.reference.kink_counts(theta, net.widths, net.activation, X))
    assert result["convention_dependent"] > 0 and result["gradient_gap"] > 0


def test_config_hash_is_stable_and_canonical():
    assert sweeps.config_hash(dict(seed=1, lr=0.5)) == sweeps.config_hash({"lr": 0.5, "seed": np.int64(1)})
    assert sweeps.config_hash(dict(widths=(1, 2))) == sweeps.config_hash(dict(widths=[1, 2]))
    assert sweeps.config_hash(dict(lr=1)) != sweeps.config_hash(dict(lr=1.0))
    # Pinned: a change of the hash would orphan every result file written before.
    assert sweeps.config_hash(dict(seed=0, steps=50)) == "9e1be3272a1838c3b912"
    assert sweeps.canonical_json(dict(b=[1, 2.5], a=None)) == '{"a":null,"b":[1,2.5]}'


def test_resume_skips_finished_configs_and_gives_the_same_table(tmp_path):
    calls = []

    def job(config):
        calls.append(config["seed"])
        return jobs.descent_job(config)

    def interrupt_after_three(finished, total):
        if finished == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        gengrad.sweep(job, QUICK, "serial", out=tmp_path, progress=interrupt_after_three)
    done = sorted(tmp_path.joinpath("results").glob("*.npz"))
    assert len(done) == 3 and not (tmp_path / "table.npz").exists()
    stamps = {p.name: p.stat().st_mtime_ns for p in done}
    assert len(sweeps.load_table(tmp_path)["seed"]) == 3  # readable while unfinished

    calls.clear()
    table = gengrad.sweep(job, QUICK, "serial", out=tmp_path)
    assert sorted(calls) == [c["seed"] for c in QUICK[3:]]
    assert {p.name: p.stat().st_mtime_ns for p in done} == stamps
    assert_tables_equal(table, gengrad.sweep(jobs.descent_job, QUICK, "serial"))
    assert_tables_equal(table, sweeps.load_table(tmp_path))
    with np.load(tmp_path / "table.npz") as saved:
        assert_tables_equal(table, dict(saved))
    calls.clear()
    gengrad.sweep(job, QUICK, "serial", out=tmp_path)
    assert calls == []


def test_a_failed_write_leaves_no_file_and_the_rerun_completes(tmp_path, monkeypatch):
    real = np.lib.format.write_array
    writes = []

    def failing_write(entry, array, **kwargs):
        writes.append(1)
        if len(writes) == 8:  # in the 2nd result file (5 arrays each: config and 4 results)
            entry.write(b"partial")
            raise OSError("disk full")
        return real(entry, array, **kwargs)

    monkeypatch.setattr(np.lib.format, "write_array", failing_write)
    with pytest.raises(OSError, match="disk full"):
        gengrad.sweep(jobs.kink_job, [dict(seed=s) for s in range(4)], "serial", out=tmp_path)
    monkeypatch.setattr(np.lib.format, "write_array", real)
    assert sorted(p.name for p in tmp_path.joinpath("results").iterdir()) == \
        sorted(f"{sweeps.config_hash(dict(seed=s))}.npz" for s in range(1))
    table = gengrad.sweep(jobs.kink_job, [dict(seed=s) for s in range(4)], "serial", out=tmp_path)
    assert len(table["risk"]) == 4 and len(list(tmp_path.joinpath("results").iterdir())) == 4


def test_an_unreadable_result_file_is_recomputed(tmp_path):
    table = gengrad.sweep(jobs.kink_job, [dict(seed=1)], "serial", out=tmp_path)
    path = next(tmp_path.joinpath("results").iterdir())
    path.write_bytes(path.read_bytes()[:50])
    with pytest.warns(UserWarning, match="unreadable"):
        again = gengrad.sweep(jobs.kink_job, [dict(seed=1)], "serial", out=tmp_path)
    assert_tables_equal(table, again)


def test_a_failing_job_names_its_config_and_keeps_the_others(tmp_path):
    def job(config):
        if config["seed"] == 2:
            raise ArithmeticError("boom")
        return {"value": config["seed"]}

    with pytest.raises(sweeps.JobFailed, match='"seed":2.*ArithmeticError: boom') as caught:
        gengrad.sweep(job, [dict(seed=s) for s in range(4)], "serial", out=tmp_path)
    assert caught.value.config == dict(seed=2) and isinstance(caught.value.__cause__, ArithmeticError)
    assert len(list(tmp_path.joinpath("results").iterdir())) == 2


@pytest.mark.parametrize("configs,error,match", [
    ([dict(a=1), dict(a=1)], ValueError, r"configs\[1\] equals configs\[0\]"),
    ([dict(a=float("nan"))], ValueError, "must be finite"),
    ([dict(a=object())], TypeError, "JSON values"),
    ([{1: 2}], TypeError, "keys must be strings"),
    ([[1, 2]], TypeError, r"configs\[0\] must be a dict"),
    (dict(a=1), TypeError, "iterable of dicts"),
    ("abc", TypeError, "iterable of dicts"),
])
def test_bad_configs(configs, error, match):
    with pytest.raises(error, match=match):
        gengrad.sweep(jobs.kink_job, configs, "serial")


def test_bad_arguments_and_results(tmp_path):
    with pytest.raises(TypeError, match="fn must be callable"):
        gengrad.sweep(3, QUICK)
    with pytest.raises(TypeError, match="executor must be"):
        gengrad.sweep(jobs.kink_job, QUICK, executor="dask")
    with pytest.raises(ValueError, match="max_workers must be >= 1"):
        gengrad.sweep(jobs.kink_job, [dict(seed=0)], max_workers=0)
    with pytest.raises(TypeError, match="threads_per_job"):
        gengrad.sweep(jobs.kink_job, QUICK, threads_per_job=1.5)
    with pytest.raises(TypeError, match="picklable"):
        gengrad.sweep(lambda c: {}, [dict(seed=0)])
    with pytest.raises(sweeps.JobFailed, match="unknown config keys"):
        gengrad.sweep(jobs.descent_job, [dict(sead=0)], "serial")
    with pytest.raises(sweeps.JobFailed, match="must return a mapping"):
        gengrad.sweep(lambda c: [1], [dict(seed=0)], "serial")
    with pytest.raises(sweeps.JobFailed, match="numeric array"):
        gengrad.sweep(lambda c: {"x": object()}, [dict(seed=0)], "serial")
    with pytest.raises(ValueError, match="also config keys"):
        gengrad.sweep(lambda c: {"seed": 1}, [dict(seed=0)], "serial")
    gengrad.sweep(jobs.kink_job, [dict(seed=0)], "serial", out=tmp_path)
    with pytest.raises(ValueError, match="holds a sweep of gengrad.jobs.kink_job"):
        gengrad.sweep(jobs.descent_job, [dict(seed=0)], "serial", out=tmp_path)
    with pytest.raises(ValueError, match="holds no sweep"):
        sweeps.load_table(tmp_path / "nothing")


def test_ragged_results_and_mixed_configs_still_make_a_table():
    table = gengrad.sweep(lambda c: {"history": np.arange(c["n"])} if c["n"] else {},
                          [dict(n=2), dict(n=3, extra=[1, 2]), dict(n=0)], "serial")
    assert table["n"].tolist() == [2, 3, 0]
    assert table["extra"].tolist() == ["null", "[1, 2]", "null"]
    assert table["history"].dtype == object and table["history"][2] is None
    assert np.array_equal(table["history"][1], [0, 1, 2])


def test_a_thread_pool_and_the_default_process_pool_give_the_serial_table(tmp_path):
    serial = gengrad.sweep(jobs.descent_job, QUICK, "serial")
    with ThreadPoolExecutor(2) as pool:
        assert_tables_equal(gengrad.sweep(jobs.descent_job, QUICK, pool), serial)
    assert_tables_equal(gengrad.sweep(jobs.descent_job, QUICK, out=tmp_path, max_workers=2), serial)
    assert len(list(tmp_path.joinpath("results").iterdir())) == len(QUICK)


def test_to_dataframe():
    pd = pytest.importorskip("pandas")
    table = gengrad.sweep(jobs.kink_job, [dict(seed=s) for s in range(3)], "serial")
    frame = sweeps.to_dataframe(table)
    assert isinstance(frame, pd.DataFrame) and len(frame) == 3
    assert np.array_equal(frame["kink_hits"][1], table["kink_hits"][1])


def test_a_dask_worker_killed_mid_sweep_loses_no_results(tmp_path, serial_table):
    distributed = pytest.importorskip("dask.distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        killed = []

        def kill_a_busy_worker(finished, total):
            if finished == 2 and not killed:
                busy = [w for w, keys in client.processing().items() if keys]
                pid = client.run(os.getpid, workers=busy[:1])[busy[0]]
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)

        table = gengrad.sweep(jobs.descent_job, DESCENT, client.get_executor(retries=2), out=tmp_path,
                              progress=kill_a_busy_worker)
        assert killed and killed[0] not in client.run(os.getpid).values()
    assert_tables_equal(table, serial_table)
    assert len(list(tmp_path.joinpath("results").glob("*.npz"))) == len(DESCENT)
    manifest = json.loads((tmp_path / "sweep.json").read_text())
    assert manifest["job"] == "gengrad.jobs.descent_job" and manifest["configs"] == DESCENT


class InlineExecutor(ThreadPoolExecutor):
    """Runs each job at once; its futures have Dask's release(), which the sweep must call."""

    def __init__(self):
        super().__init__(1)
        self.released = 0

    def submit(self, fn, *args, **kwargs):
        future = super().submit(fn, *args, **kwargs)
        future.release = lambda: setattr(self, "released", self.released + 1)
        return future


def test_saved_results_are_released_and_never_computed_again(tmp_path, monkeypatch):
    """Dask reruns the jobs of a dead worker, also those whose results the driver holds: the
    sweep releases each result before saving it, and a rerun job whose file exists returns at
    once (the driver then reads the file)."""
    expected = gengrad.sweep(jobs.descent_job, QUICK, "serial", out=tmp_path)
    with InlineExecutor() as executor:
        gengrad.sweep(jobs.descent_job, QUICK, executor, out=tmp_path / "fresh")
        assert executor.released == len(QUICK)
    calls = []
    def counting(config):
        calls.append(config)
        return {}
    counting.__module__, counting.__qualname__ = "gengrad.jobs", "descent_job"  # the same job
    monkeypatch.setattr(sweeps._Store, "finished", lambda self, keys, real=sweeps._Store.finished:
                        real(self, keys) if len(keys) == 1 else {})  # every config looks pending
    with InlineExecutor() as executor:
        table = gengrad.sweep(counting, QUICK, executor, out=tmp_path)
    assert calls == [] and executor.released == len(QUICK)
    assert_tables_equal(table, expected)


def test_a_thread_pool_sweep_leaves_the_thread_count_alone():
    before = gengrad.get_num_threads()
    try:
        gengrad.set_num_threads(3)
        with ThreadPoolExecutor(2) as executor:
            table = gengrad.sweep(sweep_jobs.threads_job, [dict(seed=s) for s in range(4)], executor, threads_per_job=1)
        assert gengrad.get_num_threads() == 3 and list(table["threads"]) == [1] * 4
    finally:
        gengrad.set_num_threads(before)


def test_a_killed_pool_worker_is_reported_as_such(tmp_path):
    with pytest.raises(sweeps.WorkerDied, match="a worker process died"):
        gengrad.sweep(sweep_jobs.kill_worker_job, [dict(seed=s, kill=s == 1) for s in range(3)], out=tmp_path,
                      max_workers=1)


def test_pool_workers_end_with_a_killed_driver(tmp_path):
    """The driver (a child process) runs a sweep of slow jobs on its own pool and is killed:
    the pool's workers end too, instead of finishing jobs nobody collects."""
    import subprocess
    import sys
    import time
    driver = subprocess.Popen([sys.executable, "-c", f"""
import gengrad, sweep_jobs
gengrad.sweep(sweep_jobs.sleep_job, [dict(seconds=60, folder={str(tmp_path)!r}, seed=s) for s in range(2)],
              max_workers=2)
"""], env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    deadline = time.monotonic() + 60
    while len(list(tmp_path.glob("*.pid"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    workers = [int(p.read_text()) for p in tmp_path.glob("*.pid")]
    assert len(workers) == 2
    driver.kill()
    driver.wait()
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in workers)


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (exited, not reaped by the killed driver's init) counts as ended
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False
