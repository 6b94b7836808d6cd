"""The core's thread count, and the controller that lets threadpoolctl see and limit it.

The core runs its parallel loops on its own pool of threads (cpp/cpu/parallel.cpp): tasks are
claimed one at a time and the calling thread works too, so a thread that another process keeps
off its core delays nobody for long; every call reads the count once, so it may be changed
from any thread at any time; a forked child makes a new pool. Results are bitwise the same for
every count.
"""
from __future__ import annotations

from contextlib import contextmanager
from numbers import Integral
from typing import Iterator

from . import _core
from .version import __version__

MAX_THREADS: int = _core.MAX_THREADS
"""The most threads set_num_threads and the environment variable GENGRAD_NUM_THREADS accept."""


def set_num_threads(n: int) -> None:
    """Threads the core may use, from 1 to MAX_THREADS (default: GENGRAD_NUM_THREADS, else the
    CPUs this process may run on). Results are bitwise identical whatever the number."""
    _core.set_num_threads(_count(n))


def _count(n: object) -> int:
    if isinstance(n, bool) or not isinstance(n, Integral):
        raise TypeError(f"n must be an integer, got {n!r}")
    if not 1 <= int(n) <= MAX_THREADS:
        raise ValueError(f"n must be an integer from 1 to {MAX_THREADS}, got {n}")
    return int(n)


def get_num_threads() -> int:
    """The threads calls from this thread may use: the limit of an enclosing ``limit`` block,
    else the process's count."""
    limited, count = _core.get_thread_limit(), _core.get_num_threads()
    return min(limited, count) if limited else count


@contextmanager
def limit(n: int) -> Iterator[None]:
    """Calls made by this thread inside the block use at most n threads (from 1 to MAX_THREADS;
    never more than the process's count); other threads and the process's count are not
    affected. For work on thread pools, such as
    sweep's threads_per_job in a ThreadPoolExecutor.

        with gengrad.threads.limit(1):
            net.risk_and_gradient(theta, X, Y)
    """
    n = _count(n)
    before = _core.get_thread_limit()
    _core.set_thread_limit(n)
    try:
        yield
    finally:
        _core.set_thread_limit(before)


def register_with_threadpoolctl() -> bool:
    """Makes threadpoolctl (if installed) list gengrad's pool, with user_api "gengrad", and apply
    ``threadpool_limits`` to it. Done at import; returns whether threadpoolctl was found."""
    try:
        import threadpoolctl
    except ImportError:
        return False

    class GengradController(threadpoolctl.LibController):  # type: ignore[misc]
        user_api = "gengrad"
        internal_api = "gengrad"
        filename_prefixes = ("_core",)
        check_symbols = ("gengrad_get_num_threads",)  # not another package's _core module

        def get_num_threads(self) -> int:
            return int(self.dynlib.gengrad_get_num_threads())

        def set_num_threads(self, num_threads: int) -> None:
            self.dynlib.gengrad_set_num_threads(int(num_threads))

        def get_version(self) -> str:
            return __version__

    threadpoolctl.register(GengradController)
    return True
