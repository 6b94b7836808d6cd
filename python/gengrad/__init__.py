"""gengrad: generalized gradients of fully-connected neural networks (see README.md).

    >>> import numpy as np, gengrad
    >>> net = gengrad.Network((2, 16, 1), activation="relu")
    >>> theta = net.init(seed=0)
    >>> risk, G = net.risk_and_gradient(theta, np.zeros((4, 2)), np.ones((4, 1)))
"""
import os
import sys
from typing import Any

try:
    from . import _core
except ImportError as error:
    # The `gengrad` command imports this package before its own code runs, so it cannot catch
    # this (a bad GENGRAD_NUM_THREADS or GENGRAD_ISA): it gets one line and status 2 as for its
    # other errors. Under `python -m gengrad.cli` argv[0] is still "-m" while the package loads.
    if os.path.basename(sys.argv[0]) in ("gengrad", "-m") and "GENGRAD_" in str(error):
        print("gengrad: " + str(error).replace("\n", "\\n"), file=sys.stderr)
        raise SystemExit(2) from None
    raise
from . import activations, cuda, datasets, jobs, reference, sweeps, threads
from .ensemble import Ensemble
from .gradient_flow import FlowResult, flow
from .network import Network
from .sweeps import sweep
from .threads import get_num_threads, set_num_threads
from .training import TrainResult, train
from .version import __version__

threads.register_with_threadpoolctl()
__all__ = ["__version__", "Network", "Ensemble", "activations", "reference", "sweep", "sweeps", "jobs", "cuda",
           "build_info", "set_num_threads", "get_num_threads", "select_isa", "select_weight_panels",
           "workspace_bytes",
           "flow", "FlowResult", "train", "TrainResult", "datasets", "threads"]


def build_info() -> dict[str, Any]:
    """The compiler, the instruction sets built and supported, the one in use, threads, whether
    the workers of a call share one copy of the packed weights ("weight_panels", see
    select_weight_panels), and under "cuda" whether the CUDA backend was built and how many
    devices it sees."""
    return {**_core.build_info(), "cuda": cuda.info()}


def workspace_bytes() -> int:
    """Scratch memory the core holds now, summed over threads: one buffer per thread that has
    called it, grown to the largest call and reused (O(block of samples x sum of widths))."""
    return _core.workspace_bytes()


def select_isa(isa: str = "auto") -> str:
    """Use the kernel build for ``isa`` ("sse2", "avx2", "avx512" on x86-64, or "auto" for the
    best this CPU supports); returns the name in use. The environment variable GENGRAD_ISA sets
    it at import; a name this would refuse fails the import, naming the variable."""
    return _core.select_isa(isa)


def select_weight_panels(policy: str = "auto") -> str:
    """Whether the threads of a call share one copy of the packed weights ("shared") or each
    read its own ("per_worker"); "auto" chooses by CPU vendor: shared on AMD, per worker
    elsewhere (measured on one machine of each, docs/performance.md). Results are bitwise the
    same either way; only speed and memory (one copy of the weights per extra thread) differ.
    Returns the policy set; an unknown name raises ValueError."""
    return _core.select_weight_panels(policy)
