"""Sweeps: many independent jobs ``fn(config) -> {name: number or array}`` on any
``concurrent.futures.Executor``, each finished result written atomically to its own file, so
that an interrupted sweep resumes where it stopped.

On one machine the default is a local process pool (started with "spawn", so a script that
uses it needs the usual ``if __name__ == "__main__":`` guard); across machines pass a Dask
executor::

    from dask.distributed import Client
    client = Client("tcp://scheduler:8786")
    table = gengrad.sweep(gengrad.jobs.descent_job, configs, out="runs/",
                          executor=client.get_executor(retries=2))

Layout of ``out``: ``sweep.json`` (the job's name and the configs, in order),
``results/<hash>.npz`` (one per finished config; hash = ``config_hash(config)``) and, once every
config has finished, ``table.npz`` (the gathered table, see ``gather``).
"""
from __future__ import annotations

import concurrent.futures as cf
import hashlib
import json
import multiprocessing
import os
import pickle
import signal
import sys
import threading
import time
import warnings
import zipfile
from collections.abc import Iterable, Mapping
from numbers import Integral, Real
from pathlib import Path
from typing import Any, Callable, Optional, Union

import numpy as np

from .files import write_atomically
from .threads import limit

Config = dict[str, Any]
Result = dict[str, np.ndarray]
Table = dict[str, np.ndarray]
Job = Callable[[Config], Mapping[str, Any]]

HASH_COLUMN = "config_hash"
_CONFIG_ENTRY = "__config__"
_MANIFEST = "sweep.json"
_TABLE = "table.npz"
_RESULTS = "results"


class WorkerDied(RuntimeError):
    """A worker process died (killed, or crashed, for example out of memory) while jobs ran on
    it; which job it was running is not known. Results that finished before are on disk: a rerun
    resumes."""


class JobFailed(RuntimeError):
    """A job raised; ``config`` and ``config_hash`` say which one (the job's own exception is
    the ``__cause__``). Results that finished before are on disk: a rerun resumes."""

    def __init__(self, config: Config, key: str, error: BaseException):
        super().__init__(f"job failed for config {canonical_json(config)} (hash {key}): "
                         f"{type(error).__name__}: {error}")
        self.config = config
        self.config_hash = key


def canonical_json(config: Mapping[str, Any]) -> str:
    """The config as JSON with sorted keys and no spaces: equal configs give equal text."""
    return json.dumps(_plain(config, "config"), sort_keys=True, separators=(",", ":"),
                      allow_nan=False)


def config_hash(config: Mapping[str, Any]) -> str:
    """A stable 20-hex-digit key for a config: SHA-256 of its canonical JSON (the same on every
    machine and Python version; 1 and 1.0 differ, as JSON says)."""
    return hashlib.sha256(canonical_json(config).encode()).hexdigest()[:20]


def sweep(fn: Job, configs: Iterable[Mapping[str, Any]],
          executor: Union[cf.Executor, str, None] = None, out: Union[str, os.PathLike[str], None] = None,
          *, max_workers: Optional[int] = None, threads_per_job: Optional[int] = 1,
          progress: Optional[Callable[[int, int], None]] = None) -> Table:
    """Runs ``fn(config)`` for every config and returns the gathered table (see ``gather``).

    Parameters
    ----------
    fn : callable taking a config dict and returning a mapping from names to numbers or numeric
        arrays. To run in other processes it must be picklable (a module-level function, e.g.
        from ``gengrad.jobs``).
    configs : dicts with string keys and JSON values (numbers, strings, booleans, None, lists,
        dicts); each must be distinct.
    executor : a ``concurrent.futures.Executor`` (``dask.distributed.Client.get_executor()``
        for a cluster), ``"serial"`` (in this process, one after another), or None: a process
        pool of ``max_workers`` (default: the CPUs) started for this call.
    out : a directory for the result files. Configs whose result file exists are not run
        again, so rerunning an interrupted sweep completes it. None: nothing is written.
    threads_per_job : gengrad threads for each job in the workers (default 1: the executor
        provides the parallelism), for the job's own thread only (``gengrad.threads.limit``), so
        a thread pool leaves the process's count as it was; None leaves the workers' setting.
        Results do not depend on it. Ignored with ``"serial"``.
    progress : called as ``progress(finished, total)`` after each result is written.

    Raises ``JobFailed`` when a job raises and ``WorkerDied`` when a worker process dies (after
    saving the results of jobs that were already running); jobs not yet started are cancelled.
    The process pool started for ``executor=None`` ends with this process, also when it is
    killed. A result already on disk is never computed again, also when Dask retries the jobs
    of a dead worker (their results are released once saved; a retried job whose file exists
    returns at once).
    """
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {type(fn).__name__}")
    if progress is not None and not callable(progress):
        raise TypeError(f"progress must be callable or None, got {type(progress).__name__}")
    threads = _threads(threads_per_job)
    configs, keys = _checked_configs(configs)
    store = None if out is None else _Store.start(Path(out), _job_name(fn), configs)
    results = {} if store is None else store.finished(keys)
    pending = [(key, config) for key, config in zip(keys, configs) if key not in results]

    columns = {HASH_COLUMN, *_keys_in_order(configs)}

    def record(key: str, config: Config, result: Optional[Result]) -> None:
        if result is None:  # a retried job found its result saved (a Dask worker died after it)
            assert store is not None
            results.update(store.finished([key]))
            if key in results:
                return
            raise WorkerDied(f"the result file of config {canonical_json(config)} vanished while the sweep ran")
        clash = columns.intersection(result)
        if clash:
            raise ValueError(f"the job's result names {sorted(clash)} are also config keys or "
                             f"{HASH_COLUMN!r}; rename them")
        if store is not None:
            store.write(key, config, result)
        results[key] = result
        if progress is not None:
            progress(len(results), len(keys))

    if executor == "serial":
        for key, config in pending:
            try:
                result = _run_job(fn, config, None, None)
            except Exception as error:
                raise JobFailed(config, key, error) from error
            record(key, config, result)
    elif executor is None or isinstance(executor, cf.Executor):
        saved = None if store is None else str(store.root)
        _run_on(executor, fn, pending, threads, max_workers, record, saved)
    else:
        raise TypeError(f"executor must be a concurrent.futures.Executor, 'serial' or None, "
                        f"got {executor!r}")
    table = gather(configs, [results[key] for key in keys])
    if store is not None:
        store.write_table(table)
    return table


def gather(configs: list[Config], results: list[Result]) -> Table:
    """The table: one row per config, in order. Columns: ``config_hash``; every config key
    (a typed array where all configs hold a scalar of one type there, otherwise each value's
    JSON text); every result name (stacked to shape (rows, ...) where all results hold it
    with one shape, otherwise an object array with None where it is missing)."""
    table: Table = {HASH_COLUMN: np.array([config_hash(c) for c in configs], dtype=str)}
    for key in _keys_in_order(configs):
        table[key] = _config_column([c.get(key, _MISSING) for c in configs])
    for name in _keys_in_order(results):
        if name in table:
            raise ValueError(f"result name {name!r} is also a config key or {HASH_COLUMN!r}")
        values = [r.get(name) for r in results]
        shapes = {None if v is None else v.shape for v in values}
        if None not in shapes and len(shapes) == 1:
            table[name] = np.stack(values)  # type: ignore[arg-type]
        else:
            column = np.empty(len(values), dtype=object)
            column[:] = values
            table[name] = column
    return table


def load_table(out: Union[str, os.PathLike[str]]) -> Table:
    """The table of the configs in ``out/sweep.json`` that have finished so far (all of them
    once the sweep is done), in config order; usable while a sweep runs elsewhere."""
    store = _Store.existing(Path(out))
    configs = store.configs()
    keys = [config_hash(c) for c in configs]
    results = store.finished(keys)
    done = [i for i, key in enumerate(keys) if key in results]
    return gather([configs[i] for i in done], [results[keys[i]] for i in done])


def to_dataframe(table: Table) -> Any:
    """The table as a pandas DataFrame (pandas is optional); columns with more than one
    dimension become one array per row."""
    import pandas as pd
    return pd.DataFrame({name: list(column) if column.ndim > 1 else column
                         for name, column in table.items()})


# --- running ------------------------------------------------------------------------------


def _run_job(fn: Job, config: Config, threads: Optional[int], saved: Optional[str]) -> Optional[Result]:
    """Runs in the worker: the job on at most `threads` gengrad threads (for calls from this
    thread only, so a thread pool's workers leave the process's count alone), its result checked
    there, so that a malformed result fails the job that produced it. None if the result is
    already in the sweep folder `saved` (a job retried by Dask after a worker died)."""
    if saved is not None and _Store(Path(saved)).result_file(config_hash(config)).exists():
        return None
    if threads is None:
        raw = fn(dict(config))
    else:
        with limit(threads):
            raw = fn(dict(config))
    if not isinstance(raw, Mapping):
        raise TypeError(f"the job must return a mapping from names to numbers or arrays, "
                        f"got {type(raw).__name__}")
    result: Result = {}
    for name, value in raw.items():
        if not isinstance(name, str) or not name or name.startswith("__"):
            raise ValueError(f"result names must be non-empty strings not starting with '__', "
                             f"got {name!r}")
        array = np.asarray(value)
        if array.dtype.kind not in "biufcU":
            raise TypeError(f"result {name!r} must be a number, a string or a numeric array, "
                            f"got {type(value).__name__} (dtype {array.dtype})")
        result[name] = array
    return result


def _run_on(executor: Optional[cf.Executor], fn: Job, pending: list[tuple[str, Config]],
            threads: Optional[int], max_workers: Optional[int],
            record: Callable[[str, Config, Optional[Result]], None], saved: Optional[str]) -> None:
    if not pending:
        return
    own = executor is None
    if executor is None:
        try:
            pickle.dumps(fn)
        except Exception as error:
            raise TypeError("fn must be picklable (a module-level function) to run in a process "
                            f"pool: {error}") from None
        # spawn, not fork: gengrad's pool is made again in a forked child, but the thread pools
        # of other libraries the parent has used (PyTorch, JAX) may hang it.
        executor = cf.ProcessPoolExecutor(_workers(max_workers, len(pending)),
                                          mp_context=multiprocessing.get_context("spawn"),
                                          initializer=_die_with, initargs=(os.getpid(),))
    futures = {executor.submit(_run_job, fn, config, threads, saved): (key, config)
               for key, config in pending}
    failure: Optional[RuntimeError] = None
    try:
        for future in cf.as_completed(futures):
            key, config = futures[future]
            if future.cancelled():
                continue
            raised = future.exception()
            if raised is None:
                result = future.result()
                # Dask recomputes the lost results of futures still held when a worker dies:
                # a result about to be saved must not be held
                getattr(future, "release", lambda: None)()
                record(key, config, result)
            elif failure is None:
                if _worker_died(raised):
                    failure = WorkerDied(f"a worker process died while running the sweep's jobs ({raised}); "
                                         "which job it ran is not known. Finished results are saved: rerun "
                                         "to continue")
                else:
                    failure = JobFailed(config, key, raised)
                failure.__cause__ = raised
                for other in futures:  # the running ones finish and are saved
                    other.cancel()
    finally:
        for future in futures:
            future.cancel()
        if own:
            executor.shutdown(wait=failure is not None, cancel_futures=True)
    if failure is not None:
        raise failure


def _worker_died(error: BaseException) -> bool:
    """A process pool's broken-pool error, or Dask's KilledWorker (not imported: optional)."""
    return isinstance(error, cf.process.BrokenProcessPool) or type(error).__name__ == "KilledWorker"


def _die_with(parent: int) -> None:
    """A pool worker's initializer: it ends when the sweep's process does (killed, too), rather
    than finishing jobs nobody will collect. Linux delivers SIGKILL at once; elsewhere a thread
    checks every second."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass

    def watch() -> None:
        while True:
            if os.getppid() != parent:
                os._exit(1)
            time.sleep(1.0)
    if os.getppid() != parent:
        os._exit(1)
    threading.Thread(target=watch, daemon=True).start()


def _workers(max_workers: Optional[int], jobs: int) -> int:
    if max_workers is None:
        return max(1, min(os.cpu_count() or 1, jobs))
    if isinstance(max_workers, bool) or not isinstance(max_workers, Integral):
        raise TypeError(f"max_workers must be an integer or None, got {max_workers!r}")
    if max_workers < 1:
        raise ValueError(f"max_workers must be >= 1, got {max_workers}")
    return int(max_workers)


def _threads(threads: Optional[int]) -> Optional[int]:
    if threads is None:
        return None
    if isinstance(threads, bool) or not isinstance(threads, Integral):
        raise TypeError(f"threads_per_job must be an integer or None, got {threads!r}")
    if threads < 1:
        raise ValueError(f"threads_per_job must be >= 1, got {threads}")
    return int(threads)


def _job_name(fn: Job) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', type(fn).__name__)}"


# --- configs ------------------------------------------------------------------------------

_MISSING = object()


def _plain(value: Any, where: str) -> Any:
    """value as plain JSON data (numpy scalars to Python numbers, tuples to lists)."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, Integral):
        return int(value)
    if isinstance(value, Real):
        number = float(value)
        if not np.isfinite(number):
            raise ValueError(f"{where} must be finite, got {number}")
        return number
    if isinstance(value, Mapping):
        for key in value:
            if not isinstance(key, str):
                raise TypeError(f"{where} keys must be strings, got {key!r}")
        return {key: _plain(item, f"{where}[{key!r}]") for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item, f"{where}[{i}]") for i, item in enumerate(value)]
    raise TypeError(f"{where} must hold JSON values (numbers, strings, booleans, None, lists, "
                    f"dicts), got {type(value).__name__}")


def _checked_configs(configs: Iterable[Mapping[str, Any]]) -> tuple[list[Config], list[str]]:
    if isinstance(configs, (str, bytes, Mapping)) or not isinstance(configs, Iterable):
        raise TypeError(f"configs must be an iterable of dicts, got {type(configs).__name__}")
    plain: list[Config] = []
    first: dict[str, int] = {}
    for i, config in enumerate(configs):
        if not isinstance(config, Mapping):
            raise TypeError(f"configs[{i}] must be a dict, got {type(config).__name__}")
        config = _plain(config, f"configs[{i}]")
        key = config_hash(config)
        if key in first:
            raise ValueError(f"configs[{i}] equals configs[{first[key]}]; each config runs once")
        first[key] = i
        plain.append(config)
    return plain, list(first)


def _keys_in_order(mappings: Iterable[Mapping[str, Any]]) -> list[str]:
    return list(dict.fromkeys(key for mapping in mappings for key in mapping))


def _config_column(values: list[Any]) -> np.ndarray:
    types = {type(v) for v in values}
    if len(types) == 1 and types <= {bool, int, float, str}:
        return np.array(values)
    return np.array([json.dumps(None if v is _MISSING else v, sort_keys=True) for v in values],
                    dtype=str)


# --- files --------------------------------------------------------------------------------


class _Store:
    """The files of a sweep; every file is written to a temporary name and renamed into place,
    so a reader (or a resumed sweep) sees a whole file or none."""

    def __init__(self, root: Path):
        self.root = root
        self.results = root / _RESULTS
        self.manifest = root / _MANIFEST

    @classmethod
    def start(cls, root: Path, job: str, configs: list[Config]) -> _Store:
        store = cls(root)
        try:
            store.results.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise ValueError(f"out must be a directory that can be created: {error}") from None
        if store.manifest.exists() and store.job() != job:
            raise ValueError(f"{root} holds a sweep of {store.job()}, not {job}; "
                             "pass another out directory")
        write_atomically(store.manifest, lambda f: f.write(
            json.dumps({"job": job, "configs": configs}, indent=1).encode()))
        return store

    @classmethod
    def existing(cls, root: Path) -> _Store:
        store = cls(root)
        if not store.manifest.exists():
            raise ValueError(f"{root} holds no sweep (no {_MANIFEST})")
        return store

    def _read_manifest(self) -> dict[str, Any]:
        try:
            manifest = json.loads(self.manifest.read_text())
        except (OSError, ValueError) as error:  # JSONDecodeError, UnicodeDecodeError are ValueErrors
            raise ValueError(f"{self.manifest} is not a readable sweep manifest: {error}") from None
        if not isinstance(manifest, dict) or not isinstance(manifest.get("configs"), list):
            raise ValueError(f"{self.manifest} is not a sweep manifest")
        return manifest

    def job(self) -> str:
        return str(self._read_manifest().get("job"))

    def configs(self) -> list[Config]:
        return list(self._read_manifest()["configs"])

    def finished(self, keys: list[str]) -> dict[str, Result]:
        """The results already on disk among ``keys``; unreadable files are run again."""
        results = {}
        for key in keys:
            path = self.result_file(key)
            if not path.exists():
                continue
            try:
                with np.load(path, allow_pickle=False) as data:
                    stored = str(data[_CONFIG_ENTRY])
                    result = {name: data[name] for name in data.files if name != _CONFIG_ENTRY}
            except (OSError, ValueError, KeyError, EOFError, NotImplementedError, zipfile.BadZipFile) as error:
                warnings.warn(f"{path} is unreadable ({error}); its config runs again",
                              stacklevel=3)
                continue
            if config_hash(json.loads(stored)) != key:
                raise ValueError(f"{path} holds the result of another config: {stored}")
            results[key] = result
        return results

    def result_file(self, key: str) -> Path:
        return self.results / f"{key}.npz"

    def write(self, key: str, config: Config, result: Result) -> None:
        arrays = {_CONFIG_ENTRY: np.array(canonical_json(config)), **result}
        write_atomically(self.result_file(key), lambda f: _write_npz(f, arrays))

    def write_table(self, table: Table) -> None:
        # Object columns (results of differing shapes) are pickled here; load_table reads the
        # result files instead, which never are.
        write_atomically(self.root / _TABLE, lambda f: _write_npz(f, table))


def _write_npz(file: Any, arrays: Mapping[str, np.ndarray]) -> None:
    """np.savez without its keyword arguments, which a result named "file" would collide with."""
    with zipfile.ZipFile(file, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
        for name, array in arrays.items():
            with archive.open(f"{name}.npy", "w", force_zip64=True) as entry:
                np.lib.format.write_array(entry, np.asanyarray(array),
                                          allow_pickle=array.dtype == object)
