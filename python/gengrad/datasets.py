"""Data sets for training and flows: handwritten digits (classification) and a smooth
regression target on an interval.

``load_digits()`` needs scikit-learn (``pip install "gengrad[data]"``), which ships the data
with the package: nothing is downloaded. ``regression()`` needs only NumPy.
"""
from __future__ import annotations

from dataclasses import dataclass
from numbers import Integral, Real
from typing import Callable, Union

import numpy as np
from numpy.typing import DTypeLike, NDArray

#: Features and regression targets: float32 or float64 (the dtype= argument decides).
FloatArray = NDArray[Union[np.float32, np.float64]]


@dataclass(frozen=True)
class Dataset:
    """Training and test data. For classification, ``y_*`` hold integer labels (the form
    Network.risk takes for cross_entropy); for regression, targets of shape (M, 1)."""

    name: str
    X_train: FloatArray
    y_train: Union[FloatArray, NDArray[np.int64]]
    X_test: FloatArray
    y_test: Union[FloatArray, NDArray[np.int64]]
    n_outputs: int          # classes, or target dimension
    task: str               # "classification" or "regression"

    @property
    def n_features(self) -> int:
        return int(self.X_train.shape[1])

    def widths(self, *hidden: int) -> tuple[int, ...]:
        """The widths of a network for this data with the given hidden widths."""
        return (self.n_features, *hidden, self.n_outputs)


def _check_fraction(test_fraction: object) -> float:
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, Real) \
            or not 0 < float(test_fraction) < 1:
        raise ValueError(f"test_fraction must lie strictly between 0 and 1, got {test_fraction!r}")
    return float(test_fraction)


def _check_seed(seed: object) -> int:
    if isinstance(seed, bool) or not isinstance(seed, Integral) or int(seed) < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def _dtype(dtype: DTypeLike) -> np.dtype[Union[np.float32, np.float64]]:
    checked = np.dtype(dtype)
    if checked == np.float32:
        return np.dtype(np.float32)
    if checked == np.float64:
        return np.dtype(np.float64)
    raise TypeError(f"dtype must be float32 or float64, got {checked}")


def load_digits(test_fraction: float = 0.25, seed: int = 0, standardize: bool = True,
                dtype: DTypeLike = np.float64) -> Dataset:
    """scikit-learn's 8x8 handwritten digits (1797 images, 64 features, 10 classes).

    A stratified split with ``seed`` (the default split is fixed: seed 0, 25 % test) and, when
    ``standardize``, features centred and scaled by the training set's mean and standard
    deviation (pixels that are constant on the training set are only centred).
    """
    try:
        from sklearn.datasets import load_digits as sklearn_digits
        from sklearn.model_selection import train_test_split
    except ImportError:
        raise ImportError("load_digits needs scikit-learn: pip install 'gengrad[data]'") from None
    fraction, rng_seed, float_dtype = _check_fraction(test_fraction), _check_seed(seed), _dtype(dtype)
    X, y = sklearn_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(
        X.astype(np.float64), y.astype(np.int64), test_size=fraction, random_state=rng_seed,
        stratify=y)
    if standardize:
        mean, std = X_train.mean(axis=0), X_train.std(axis=0)
        std[std == 0] = 1.0
        X_train, X_test = (X_train - mean) / std, (X_test - mean) / std
    return Dataset("digits", np.ascontiguousarray(X_train, float_dtype), y_train,
                   np.ascontiguousarray(X_test, float_dtype), y_test, 10, "classification")


#: Smooth targets on [-1, 1] (the setting of Jentzen et al.'s analyses of gradient methods for
#: shallow ReLU networks: a 1-d input on an interval and a smooth target).
TARGETS: dict[str, Callable[[NDArray[np.float64]], NDArray[np.float64]]] = {
    "sine": lambda x: np.sin(np.pi * x),
    "runge": lambda x: 1.0 / (1.0 + 25.0 * x * x),
    "cubic": lambda x: x ** 3 - 0.5 * x,
}


def regression(target: str = "sine", n_train: int = 64, n_test: int = 256, noise: float = 0.0,
               seed: int = 0, dtype: DTypeLike = np.float64) -> Dataset:
    """y = f(x) on [-1, 1] for a smooth f (TARGETS): ``n_train`` points drawn uniformly with
    ``seed`` (targets plus Gaussian ``noise`` of that standard deviation), and a test set of
    ``n_test`` equally spaced points without noise."""
    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r}; expected one of {', '.join(TARGETS)}")
    for name, value in (("n_train", n_train), ("n_test", n_test)):
        if isinstance(value, bool) or not isinstance(value, Integral) or int(value) < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if isinstance(noise, bool) or not isinstance(noise, Real) or not float(noise) >= 0:
        raise ValueError(f"noise must be a non-negative number, got {noise!r}")
    float_dtype, f = _dtype(dtype), TARGETS[target]
    rng = np.random.default_rng(_check_seed(seed))
    x_train = np.sort(rng.uniform(-1.0, 1.0, n_train))[:, None]
    y_train = f(x_train) + noise * rng.normal(size=x_train.shape)
    x_test = np.linspace(-1.0, 1.0, n_test)[:, None]
    return Dataset(f"regression-{target}", x_train.astype(float_dtype), y_train.astype(float_dtype),
                   x_test.astype(float_dtype), f(x_test).astype(float_dtype), 1, "regression")
