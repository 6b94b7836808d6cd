"""The `gengrad` command: one module per subcommand, each with a register(commands) that adds
its parser."""
from __future__ import annotations

import argparse
import os
import sys
from typing import NoReturn, Optional, Sequence

from . import demo, flow, info, narrow, train, verify

# Optional modules and the extra that installs them, for one-line errors.
_EXTRAS = {"sympy": "narrow", "mpmath": "narrow", "scipy": "narrow", "matplotlib": "plot", "sklearn": "data",
           "tqdm": "progress", "torch": "torch", "jax": "jax"}


def _one_line(command: str, error: BaseException) -> str:
    module = (getattr(error, "name", None) or "").split(".")[0]
    if isinstance(error, ImportError) and module in _EXTRAS:
        return f"gengrad {command}: needs {module}: pip install 'gengrad[{_EXTRAS[module]}]'"
    return f"gengrad {command}: {error}"


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors as one line (no usage block); the subcommands' parsers are of
    this class too."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message}\n")


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = _Parser(prog="gengrad", description="gengrad: generalized gradients of fully-connected networks, "
                     "their checks, training and gradient flows, and Park's narrow network")
    commands = parser.add_subparsers(dest="command", required=True)
    for command in (demo, narrow, verify, info, train, flow):
        command.register(commands)
    args = parser.parse_args(argv)
    try:
        status: int = args.run(args)
    except BrokenPipeError:
        # the reader went away (gengrad info | head -1): stop quietly, as command-line tools do;
        # stdout goes to /dev/null so that Python's flush at exit does not fail again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except (ImportError, ValueError, TypeError, OSError, FloatingPointError) as error:
        # bad arguments, missing extras, unreadable files, a diverged run: one line, no traceback
        print(_one_line(args.command, error), file=sys.stderr)
        return 2
    return status


if __name__ == "__main__":
    sys.exit(main())
