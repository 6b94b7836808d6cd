"""Writing files so that nothing is lost: checkpoints, sweep results and figures.

A file is written to a temporary file beside it and moved into place (os.replace), so a reader
or a crash sees the old file or the new one, never half of one. The temporary's name holds the
writer's process id: temporaries of writers that no longer run (killed mid-write) are removed
by the next write to the same path. The file gets the permissions any new file gets under the
umask (tempfile.mkstemp's are 0600).
"""
from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import IO, Any, Callable, Union

PathLike = Union[str, "os.PathLike[str]"]


def writable_folder(path: PathLike, name: str) -> Path:
    """The path, after checking that its folder exists and is writable; ValueError naming the
    argument `name` otherwise. For checks before the work whose result goes there."""
    target = Path(os.fspath(path)).absolute()
    if not target.parent.is_dir():
        raise ValueError(f"{name}: the folder {str(target.parent)!r} does not exist")
    if not os.access(target.parent, os.W_OK | os.X_OK):
        raise ValueError(f"{name}: the folder {str(target.parent)!r} is not writable")
    if target.is_dir():
        raise ValueError(f"{name}: {str(target)!r} is a folder, expected a file path")
    longest = os.pathconf(target.parent, "PC_NAME_MAX") if hasattr(os, "pathconf") else 255
    if len(os.fsencode(target.name)) + 32 > longest:  # room for the temporary's prefix and suffix
        raise ValueError(f"{name}: the file name {target.name[:40]!r}... is too long for this file system "
                         f"(at most {longest - 32} bytes here)")
    return target


def write_atomically(path: PathLike, write: Callable[[IO[bytes]], Any]) -> None:
    """Calls write(file) on a temporary file beside `path`, then moves it to `path`."""
    target = Path(os.fspath(path)).absolute()
    remove_stale_temporaries(target)
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=_prefix(target) + f"{os.getpid()}.",
                                         suffix=".tmp")
    try:
        os.fchmod(handle, 0o666 & ~_umask())
        with os.fdopen(handle, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, target)
    except BaseException:
        try:
            os.unlink(temporary)
        except FileNotFoundError:
            pass
        raise


def remove_stale_temporaries(target: Path) -> None:
    """Removes the temporaries of `target` left by writers that no longer run."""
    prefix = _prefix(target)
    try:
        names = [n for n in os.listdir(target.parent) if n.startswith(prefix) and n.endswith(".tmp")]
    except OSError:
        return
    for name in names:
        # exactly <pid>.<mkstemp's letters>.tmp after the prefix: ".a.npz.1.x.tmp" of "a.npz.1"
        # also starts with ".a.npz."
        match = re.fullmatch(r"(\d+)\.[A-Za-z0-9_]+\.tmp", name[len(prefix):])
        if match and not _running(int(match.group(1))):
            try:
                os.unlink(target.parent / name)
            except OSError:
                pass


def _prefix(target: Path) -> str:
    return f".{target.name}."


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def _umask() -> int:
    """The process's umask, without changing it (os.umask can only be read by setting it, which
    races with other threads creating files)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
