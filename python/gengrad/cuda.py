"""The CUDA backend: ``Network(..., backend="cuda")`` and ``Ensemble(..., backend="cuda")``.

gengrad._cuda is built only where a CUDA compiler was found (CMake option GENGRAD_CUDA), and
it needs a device at run time; ``unavailable()`` says why the backend cannot run, and the
constructors raise with that reason. Arguments are NumPy arrays (copied to the device) or CUDA
device arrays, taken without a copy through DLPack (CuPy arrays, PyTorch and JAX tensors on the
GPU); results follow theta: NumPy for a NumPy theta, ``gengrad._cuda.DeviceArray`` for a device
theta, which ``torch.from_dlpack``, ``cupy.from_dlpack`` and ``jax.dlpack.from_dlpack`` take
without a copy and ``np.asarray`` copies to the host.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import numpy as np

if TYPE_CHECKING:
    from . import _cuda as _cuda_module

try:
    from . import _cuda
except ImportError as error:
    _cuda = None  # type: ignore[assignment]
    # No extension file: built without a CUDA compiler. A file that does not load: say why.
    _FILES = [p for p in Path(__file__).parent.glob("_cuda*") if p.suffix in (".so", ".pyd")]
    _BROKEN: Optional[str] = str(error) if _FILES else None
else:
    _BROKEN = None

#: DLPack device types whose memory the kernels read: CUDA and CUDA managed memory
_CUDA_DEVICE_TYPES = (2, 13)


def built() -> bool:
    """Whether this installation has the CUDA backend (gengrad._cuda)."""
    return _cuda is not None


def unavailable() -> Optional[str]:
    """None when backend="cuda" can run here; otherwise the reason."""
    if _cuda is None and _BROKEN is not None:
        return f"gengrad._cuda does not load: {_BROKEN}"
    return _reason(None if _cuda is None else _cuda.build_info())


def _reason(info: Optional[dict[str, Any]]) -> Optional[str]:
    """unavailable() from the extension's build_info (None: not built), which asks the driver."""
    if info is None:
        return ("gengrad was built without the CUDA backend (no CUDA compiler was found when it was "
                "installed; see GENGRAD_CUDA in docs/cuda.md)")
    if info["devices"] == 0:
        if not _driver_installed():
            return ("no NVIDIA driver on this machine (libcuda.so.1 is not found): there is no GPU here, or "
                    "its driver is not installed")
        return f"no CUDA device is usable; the CUDA runtime says: {info['unavailable']}"
    return None


def _driver_installed() -> bool:
    """Whether the NVIDIA driver's library loads (the CUDA runtime, linked statically, reports its
    absence as "driver version is insufficient", which reads as if an upgrade would help)."""
    import ctypes
    try:
        ctypes.CDLL("libcuda.so.1")
    except OSError:
        return False
    return True


def info() -> dict[str, Any]:
    """What gengrad.build_info() reports about CUDA: built, devices, their names, architectures."""
    if _cuda is None:
        return {"built": False, "devices": 0, "unavailable": unavailable()}
    built_info = _cuda.build_info()
    return {**built_info, "built": True, "unavailable": _reason(built_info)}


def is_device_array(value: Any) -> bool:
    """Whether ``value`` is an array in CUDA memory that DLPack hands over (not a NumPy array,
    nor a CPU tensor, which the Network converts to NumPy as usual)."""
    if isinstance(value, np.ndarray) or not hasattr(value, "__dlpack_device__"):
        return False
    try:
        device_type = int(value.__dlpack_device__()[0])
    except Exception:
        return False
    return device_type in _CUDA_DEVICE_TYPES


def numpy_dtype(dtype: Any) -> np.dtype:
    """NumPy's dtype for a NumPy, CuPy or JAX dtype, or a PyTorch one (torch.float32)."""
    try:
        result: np.dtype = np.dtype(dtype)
    except TypeError:
        result = np.dtype(str(dtype).rsplit(".", 1)[-1])
    return result


#: _core.Model's constructor arguments: widths, activation kind, kinks, slopes, offset,
#: right_sided, loss
ModelArgs = tuple[list[int], int, list[float], list[float], float, list[bool], int]


def model(args: ModelArgs, emulate: bool = False) -> _cuda_module.Model:
    """The CUDA model for _core.Model's constructor arguments. ``emulate`` runs the kernels'
    phases on the CPU, thread after thread (for tests without a GPU); NumPy arrays only."""
    if _cuda is None or not emulate:
        reason = unavailable()
        if reason is not None:
            raise RuntimeError(f"backend='cuda' is unavailable: {reason}")
    assert _cuda is not None
    return _cuda.Model(*args, emulate=emulate)
