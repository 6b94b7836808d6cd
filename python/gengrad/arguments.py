"""Checks and conversions of arguments, shared by every module that takes them from users:
each failure is a TypeError or ValueError that names the argument and says what was expected."""
from __future__ import annotations

from numbers import Integral, Real
from typing import Any, Callable, Optional, TypeVar

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

MAX_WIDTH = 2**62  # the core counts in int64 (and refuses d >= 2^63)


def check_widths(widths: Any, max_layers: int) -> tuple[int, ...]:
    try:
        widths = tuple(widths)
    except TypeError:
        raise TypeError(f"widths must be a sequence of integers, got {type(widths).__name__}") from None
    if not 2 <= len(widths) <= max_layers + 1:
        raise ValueError(f"widths must list 2 to {max_layers + 1} layer widths (input, hidden..., "
                         f"output), got {len(widths)}")
    for w in widths:
        if isinstance(w, bool) or not isinstance(w, Integral):
            raise TypeError(f"widths must be integers, got {w!r}")
        if not 1 <= int(w) <= MAX_WIDTH:
            raise ValueError(f"every width must be between 1 and 2^62, got widths={widths}")
    return tuple(int(w) for w in widths)


def float_dtype(dtype: Any, name: str) -> np.dtype:
    try:
        result: np.dtype = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"{name} must be float32 or float64, got {dtype!r}") from None
    if result not in (np.float32, np.float64):
        raise TypeError(f"{name} must have dtype float32 or float64, got {result}")
    return result


def zeros(shape: tuple[int, ...], dtype: DTypeLike, what: str) -> np.ndarray:
    """np.zeros, whose MemoryError also says what the array was for."""
    try:
        return np.zeros(shape, dtype)
    except MemoryError as error:
        raise MemoryError(f"{what}: {error}") from None


def as_ndarray(value: ArrayLike, name: str) -> ArrayLike:
    """An object that has a dtype and converts to NumPy (a PyTorch CPU tensor, a JAX array) as
    the ndarray it converts to, so that it keeps its dtype exactly as a NumPy array would: a
    float32 tensor is float32, not NumPy's default float64. Anything else (lists, numbers) is
    returned as it is, for NumPy's default conversion."""
    if isinstance(value, np.ndarray) or not (hasattr(value, "__array__") and hasattr(value, "dtype")):
        return value
    try:
        return np.asarray(value)
    except (TypeError, ValueError, RuntimeError) as error:  # torch: CUDA or requires_grad tensors
        raise TypeError(f"{name} cannot be converted to a NumPy array: {error}") from None


_Seeded = TypeVar("_Seeded")


def seeded(make: Callable[[Any], _Seeded], seed: Any) -> _Seeded:
    """make(seed) (a Generator, a SeedSequence), or ValueError naming seed."""
    try:
        return make(seed)
    except (TypeError, ValueError) as error:
        raise ValueError(f"seed must be a non-negative integer, a sequence of them, None or a numpy "
                         f"Generator or SeedSequence, got {seed!r} ({error})") from None


def labels_or_targets(Y: Any, dims: int = 1) -> Any:
    """A (nested) list of class labels with ``dims`` dimensions as an integer array, as if it
    had been given as one; anything else as it is."""
    try:
        array = np.asarray(Y)
    except (TypeError, ValueError):
        return Y
    return array if array.ndim == dims and array.dtype.kind in "iu" else Y


def typed_array(value: Any, name: str, dtype: DTypeLike) -> np.ndarray:
    """value as a C-contiguous array of ``dtype``; arrays (and array-likes with a dtype) of
    another dtype are refused rather than silently converted (a float64 X with a float32 theta
    is usually a mistake)."""
    value = as_ndarray(value, name)
    if isinstance(value, np.ndarray):
        if value.dtype != dtype:
            raise TypeError(f"{name} has dtype {value.dtype} but theta has dtype {np.dtype(dtype)}; "
                            f"convert it with {name}.astype(np.{np.dtype(dtype)})")
        return value if value.flags.c_contiguous else np.ascontiguousarray(value)
    try:
        return np.ascontiguousarray(value, dtype=dtype)
    except (TypeError, ValueError) as error:
        raise TypeError(f"{name} must be an array of numbers: {error}") from None


def positive(value: object, name: str, allow_zero: bool = False) -> float:
    """A finite real number > 0 (or >= 0 with allow_zero) as a float."""
    what = "a number >= 0" if allow_zero else "a positive number"
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be {what}, got {value!r}")
    number = float(value)
    if not ((number >= 0 if allow_zero else number > 0) and np.isfinite(number)):
        raise ValueError(f"{name} must be {'a number >= 0 (finite)' if allow_zero else 'a positive finite number'}, "
                         f"got {number}")
    return number


def count(value: object, name: str, low: int, high: Optional[int] = None) -> int:
    """An integer in [low, high] (no upper bound when high is None)."""
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    number = int(value)
    if number < low or (high is not None and number > high):
        bounds = f"in [{low}, {high}]" if high is not None else f">= {low}"
        raise ValueError(f"{name} must be {bounds}, got {number}")
    return number
