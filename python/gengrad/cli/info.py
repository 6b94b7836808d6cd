"""`gengrad info`: the build, the threads, and whether the CUDA backend is usable."""
from __future__ import annotations

import argparse

from .. import build_info
from ..version import __version__


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser("info", help="build information, threads, whether the CUDA backend is usable")
    parser.set_defaults(run=info)


def info(args: argparse.Namespace) -> int:
    core = build_info()
    cuda = core.pop("cuda")
    print(f"gengrad {__version__}: {core['compiler']}; kernels {core['isa']} (built: {', '.join(core['isas_built'])}; "
          f"this CPU: {', '.join(core['isas_supported'])}); {core['threads']} threads (at most {core['max_threads']})")
    if not cuda["built"]:
        print(f"CUDA backend: not available: {cuda['unavailable']}")
    elif cuda["unavailable"]:
        print(f"CUDA backend: built (architectures {cuda['architectures']}), not usable here: {cuda['unavailable']}")
    else:
        print(f"CUDA backend: usable on {cuda['devices']} device(s): {', '.join(cuda['device_names'])}")
    return 0
