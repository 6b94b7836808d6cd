"""The backends behind Network and Ensemble: one protocol, three implementations.

- "cpp": the compiled core's Model (gengrad._core), float32 and float64;
- "cuda": the CUDA backend's Model (gengrad._cuda through gengrad.cuda);
- "reference": the NumPy float64 reference (gengrad.reference), which checks its arguments itself,
  without the compiled core, so that it stays an independent implementation.

Network and Ensemble prepare the arrays (types and conversions); a backend checks sizes and
values and computes. Family and loss codes are the core's (gengrad._core.FAMILY_CODES,
LOSS_CODES), read there and nowhere copied.
"""
from __future__ import annotations

from typing import Optional, Protocol

import numpy as np

from . import _core, activations, cuda, reference

#: The name of each approximant family code (0: the generalized gradient).
_FAMILIES = {code: name for name, code in _core.FAMILY_CODES.items()}


class Backend(Protocol):
    """What a backend computes, on arrays that Network and Ensemble have typed."""

    def pre_activations(self, theta: np.ndarray, X: np.ndarray, first: int) -> np.ndarray: ...

    def risk_gradient(self, theta: np.ndarray, X: np.ndarray, Y: np.ndarray, sample_weight: Optional[np.ndarray],
                      family: int, r: float, want_gradient: bool, out: Optional[np.ndarray]
                      ) -> tuple[float, Optional[np.ndarray]]: ...

    def kink_counts(self, theta: np.ndarray, X: np.ndarray) -> np.ndarray: ...

    def ensemble_pre_activations(self, thetas: np.ndarray, X: np.ndarray, first: int) -> np.ndarray: ...

    def ensemble_risk_gradient(self, thetas: np.ndarray, X: np.ndarray, Y: np.ndarray,
                               sample_weight: Optional[np.ndarray], family: int, r: float, want_gradient: bool,
                               out: Optional[np.ndarray]) -> tuple[np.ndarray, Optional[np.ndarray]]: ...

    def ensemble_kink_counts(self, thetas: np.ndarray, X: np.ndarray) -> np.ndarray: ...


def make(name: str, core: _core.Model, model_args: cuda.ModelArgs, widths: tuple[int, ...],
         activation: activations.Activation, loss: str) -> Backend:
    """The backend ``name`` for the network that the core's ``core`` (built from ``model_args``)
    describes: for "cpp", ``core`` itself."""
    if name == "cpp":
        return core
    if name == "cuda":
        return cuda.model(model_args)
    return ReferenceBackend(widths, activation, loss)


class ReferenceBackend:
    """The NumPy reference (float64) behind the Backend protocol. Ensembles are loops."""

    def __init__(self, widths: tuple[int, ...], activation: activations.Activation, loss: str):
        self.widths, self.activation, self.loss = widths, activation, loss
        self.dim = sum(out * (inp + 1) for inp, out in zip(widths[:-1], widths[1:]))

    def pre_activations(self, theta: np.ndarray, X: np.ndarray, first: int) -> np.ndarray:
        self._theta(theta, "theta", (self.dim,))
        _checked(X, "X", (None, self.widths[0]))
        if not 1 <= first <= len(self.widths) - 1:
            raise ValueError(f"first must be a layer between 1 and {len(self.widths) - 1}")
        return np.hstack(reference.pre_activations(theta, self.widths, self.activation, X)[first - 1:])

    def risk_gradient(self, theta: np.ndarray, X: np.ndarray, Y: np.ndarray, sample_weight: Optional[np.ndarray],
                      family: int, r: float, want_gradient: bool, out: Optional[np.ndarray]
                      ) -> tuple[float, Optional[np.ndarray]]:
        self._theta(theta, "theta", (self.dim,))
        self._data(X, Y, sample_weight)
        if family not in _FAMILIES:
            raise ValueError(f"unknown approximant family {family}")
        risk = reference.risk(theta, self.widths, self.activation, X, Y, self.loss, sample_weight)
        if not want_gradient:
            return risk, None
        if family == 0:
            grad = reference.generalized_gradient(theta, self.widths, self.activation, X, Y, self.loss, sample_weight)
        else:
            grad = reference.approx_gradient(theta, self.widths, self.activation, X, Y, r, _FAMILIES[family],
                                             self.loss, sample_weight)
        if out is not None:
            _output(out, (self.dim,), (theta, X, Y, sample_weight))
            out[...] = grad
            grad = out
        return risk, grad

    def kink_counts(self, theta: np.ndarray, X: np.ndarray) -> np.ndarray:
        self._theta(theta, "theta", (self.dim,))
        _checked(X, "X", (None, self.widths[0]))
        return reference.kink_counts(theta, self.widths, self.activation, X)

    def ensemble_pre_activations(self, thetas: np.ndarray, X: np.ndarray, first: int) -> np.ndarray:
        return np.stack([self.pre_activations(theta, x, first) for theta, x in self._networks(thetas, X)])

    def ensemble_risk_gradient(self, thetas: np.ndarray, X: np.ndarray, Y: np.ndarray,
                               sample_weight: Optional[np.ndarray], family: int, r: float, want_gradient: bool,
                               out: Optional[np.ndarray]) -> tuple[np.ndarray, Optional[np.ndarray]]:
        n = len(self._networks(thetas, X))
        weights = [sample_weight[i] if sample_weight is not None and sample_weight.ndim == 2 else sample_weight
                   for i in range(n)]
        per_network = [(Y[i] if Y.ndim == 3 else Y, weights[i]) for i in range(n)]
        results = [self.risk_gradient(theta, x, y, w, family, r, want_gradient, None)
                   for (theta, x), (y, w) in zip(self._networks(thetas, X), per_network)]
        risks = np.array([risk for risk, _ in results])
        if not want_gradient:
            return risks, None
        grads = np.stack([g for _, g in results])  # type: ignore[misc]
        if out is not None:
            _output(out, (n, self.dim), (thetas, X, Y, sample_weight))
            out[...] = grads
            grads = out
        return risks, grads

    def ensemble_kink_counts(self, thetas: np.ndarray, X: np.ndarray) -> np.ndarray:
        return np.stack([self.kink_counts(theta, x) for theta, x in self._networks(thetas, X)])

    def _theta(self, theta: np.ndarray, name: str, shape: tuple[Optional[int], ...]) -> None:
        if theta.dtype != np.float64:
            raise TypeError(f"the reference backend computes in float64; {name} has dtype {theta.dtype}")
        _checked(theta, name, shape)

    def _data(self, X: np.ndarray, Y: np.ndarray, sample_weight: Optional[np.ndarray]) -> None:
        _checked(X, "X", (None, self.widths[0]))
        M = X.shape[0]
        if M == 0:
            raise ValueError(f"X must hold at least one sample, got shape (0, {self.widths[0]})")
        _checked(Y, "Y", (M, self.widths[-1]))
        if sample_weight is not None:
            _checked(sample_weight, "sample_weight", (M,))
            negative = np.flatnonzero(sample_weight < 0)
            if negative.size:
                raise ValueError(f"sample_weight must be non-negative, got {sample_weight[negative[0]]} at index "
                                 f"{negative[0]}")

    def _networks(self, thetas: np.ndarray, X: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        if thetas.ndim != 2 or thetas.shape[0] == 0:
            raise ValueError(f"thetas must have shape (n, {self.dim}) with n >= 1, got {thetas.shape}")
        self._theta(thetas, "thetas", (None, self.dim))
        n, l0 = thetas.shape[0], self.widths[0]
        if not ((X.ndim == 2 and X.shape[1] == l0) or (X.ndim == 3 and X.shape[0] == n and X.shape[2] == l0)):
            raise ValueError(f"X must have shape {_shape_text((None, l0))} (shared) or {_shape_text((n, None, l0))} "
                             f"(one per network), got {tuple(X.shape)}")
        return [(thetas[i], X[i]) for i in range(n)] if X.ndim == 3 else [(theta, X) for theta in thetas]


def _shape_text(shape: tuple[Optional[int], ...]) -> str:
    text = ", ".join("M" if s is None else str(s) for s in shape)
    return f"({text},)" if len(shape) == 1 else f"({text})"


def _checked(array: np.ndarray, name: str, shape: tuple[Optional[int], ...]) -> None:
    """The reference's own version of the core's checks (cpp/python/model.hpp): shape and finite
    values, with the same wording."""
    if array.ndim != len(shape) or any(s is not None and s != a for s, a in zip(shape, array.shape)):
        raise ValueError(f"{name} must have shape {_shape_text(shape)}, got {tuple(array.shape)}")
    bad = np.flatnonzero(~np.isfinite(array.ravel()))
    if bad.size:
        raise ValueError(f"{name} contains NaN or Inf (first at flat index {bad[0]})")


def _output(out: np.ndarray, shape: tuple[int, ...], inputs: tuple[Optional[np.ndarray], ...]) -> None:
    if not isinstance(out, np.ndarray) or out.dtype != np.float64:
        raise TypeError("out must be a numpy array with the dtype of theta")
    if out.shape != shape:
        raise ValueError(f"out must have shape {shape}, got {out.shape}")
    if not out.flags.c_contiguous:
        raise ValueError("out must be C-contiguous")
    if not out.flags.writeable:
        raise ValueError("out must be writeable, got a read-only array")
    if any(x is not None and np.shares_memory(out, x) for x in inputs):
        raise ValueError("out must not share memory with the inputs")
