"""Fully-connected networks on a flat parameter vector, and their generalized gradients."""
from __future__ import annotations

from numbers import Integral
from typing import Any, Callable, Optional, Protocol, Sequence, TypeVar, Union

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from . import _core, activations, cuda, reference

LOSSES = ("squared_error", "cross_entropy")
BACKENDS = ("cpp", "reference", "cuda")
INIT_SCHEMES = ("he_uniform", "glorot_uniform", "torch")
_ACTIVATION_KINDS = {"tanh": 1, "sigmoid": 2, "softplus": 3, "gelu": 4, "silu": 5}
_FAMILY_CODES = {"cubic": 1, "sine": 2, "softplus": 3, "shifted_softplus": 4}
MAX_LAYERS = 64
MAX_WIDTH = 2**62  # the core counts in int64 (and refuses d >= 2^63)
_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
ActivationLike = Union[str, activations.Activation]


class _Backend(Protocol):
    """What a backend computes; the Network prepares and types the arrays."""

    def pre_activations(self, theta: np.ndarray, X: np.ndarray, first: int) -> np.ndarray: ...

    def risk_gradient(self, theta: np.ndarray, X: np.ndarray, Y: np.ndarray, weight: Optional[np.ndarray],
                      family: int, r: float, want_gradient: bool, out: Optional[np.ndarray]
                      ) -> tuple[float, Optional[np.ndarray]]: ...

    def kink_counts(self, theta: np.ndarray, X: np.ndarray) -> np.ndarray: ...


class Network:
    """A fully-connected network with widths (l_0, ..., l_L) (docs/math.md §1-§4).

    Parameters
    ----------
    widths : sequence of int
        Input width, hidden widths, output width; at least two entries, each >= 1.
    activation : str or gengrad.activations.Activation
        One of gengrad.activations.NAMES, or an Activation such as ``activations.leaky_relu(0.2)``.
    convention : None, "left", "right", a number, or one number per kink
        The generalized derivative's value at the kinks (default: PyTorch's where it uses a
        one-sided derivative; see gengrad.activations). Values strictly between the one-sided
        derivatives are rejected.
    loss : "squared_error" (||z - y||^2, the default) or "cross_entropy" (softmax).
    backend : "cpp" (the compiled core, float32 and float64), "reference" (NumPy, float64) or
        "cuda" (the GPU, float32 and float64; arguments may also be CUDA device arrays, see
        gengrad.cuda; raises RuntimeError with the reason where it is unavailable).
    """

    def __init__(self, widths: Sequence[int], activation: ActivationLike = "relu",
                 convention: activations.Convention = None, loss: str = "squared_error", backend: str = "cpp"):
        self.widths = _check_widths(widths)
        self.activation = activations.get(activation, convention)
        if loss not in LOSSES:
            raise ValueError(f"unknown loss {loss!r}; expected one of {', '.join(LOSSES)}")
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; expected one of {', '.join(BACKENDS)}")
        self.loss = loss
        self.backend = backend
        act = self.activation
        self._model_args = (list(self.widths), 0 if act.piecewise_linear else _ACTIVATION_KINDS[act.name],
                            list(act.kinks), list(act.slopes), _offset(act), list(act.right_sided),
                            LOSSES.index(loss))
        self._core = _core.Model(*self._model_args)
        self._impl: _Backend = (self._core if backend == "cpp" else _ReferenceBackend(self) if backend == "reference"
                                else cuda.model(self._model_args))
        self.layout = [tuple(layer) for layer in self._core.layout()]

    @property
    def dim(self) -> int:
        """d = sum_k l_k (l_{k-1} + 1), the length of theta."""
        return self._core.dim

    @property
    def n_layers(self) -> int:
        return len(self.widths) - 1

    def __repr__(self) -> str:
        return (f"Network(widths={self.widths}, activation={self.activation}, loss={self.loss!r}, "
                f"backend={self.backend!r}, dim={self.dim})")

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickling and copying rebuild the network from its definition (the core's model is
        made again), so networks travel to process pools, Dask and joblib workers."""
        return (Network, (self.widths, self.activation, None, self.loss, self.backend))

    # --- parameters -------------------------------------------------------------------------

    def init(self, seed: Any = 0, dtype: DTypeLike = np.float64, scheme: Optional[str] = None) -> np.ndarray:
        """A random theta. Schemes (fan_in = l_{k-1}, fan_out = l_k):

        - ``he_uniform`` (default for piecewise-linear activations): W ~ U(+-sqrt(6/fan_in)), b = 0;
        - ``glorot_uniform`` (default for smooth ones): W ~ U(+-sqrt(6/(fan_in+fan_out))), b = 0;
        - ``torch`` (nn.Linear's default): W and b ~ U(+-1/sqrt(fan_in)).

        Drawn in float64 from numpy's PCG64 seeded with ``seed`` and rounded to ``dtype``, so
        float32 and float64 initialisations agree to float32 rounding.
        """
        dtype = _float_dtype(dtype, "dtype")
        if scheme is None:
            scheme = "he_uniform" if self.activation.piecewise_linear else "glorot_uniform"
        if scheme not in INIT_SCHEMES:
            raise ValueError(f"unknown init scheme {scheme!r}; expected one of {', '.join(INIT_SCHEMES)}")
        rng = seeded(np.random.default_rng, seed)
        theta = _zeros((self.dim,), np.float64, f"init: widths {self.widths} (d = {self.dim})")
        for W, b in self.layers(theta):
            fan_out, fan_in = W.shape
            if scheme == "torch":
                bound = 1.0 / np.sqrt(fan_in)
                W[...] = rng.uniform(-bound, bound, W.shape)
                b[...] = rng.uniform(-bound, bound, b.shape)
            else:
                scale = 6.0 / fan_in if scheme == "he_uniform" else 6.0 / (fan_in + fan_out)
                W[...] = rng.uniform(-np.sqrt(scale), np.sqrt(scale), W.shape)
        return theta.astype(dtype)

    def layers(self, theta: ArrayLike) -> list[tuple[np.ndarray, np.ndarray]]:
        """Views (W_k, b_k), k = 1..L, into theta: writing to them writes theta."""
        theta = self._theta(theta)
        if theta.shape != (self.dim,):  # the core checks this for every other method
            raise ValueError(f"theta must have shape ({self.dim},), got {theta.shape}")
        return [(theta[w:w + rows * cols].reshape(rows, cols), theta[b:b + rows])
                for w, b, rows, cols in self.layout]

    def flatten(self, layers: Sequence[tuple[ArrayLike, ArrayLike]], dtype: DTypeLike = np.float64) -> np.ndarray:
        """The theta whose layers are ``layers`` (the inverse of ``layers``)."""
        dtype = _float_dtype(dtype, "dtype")
        if len(layers) != self.n_layers:
            raise ValueError(f"layers must hold {self.n_layers} (W, b) pairs, got {len(layers)}")
        theta = np.empty(self.dim, dtype)
        for k, ((W, b), (Wv, bv)) in enumerate(zip(layers, self.layers(theta)), start=1):
            for name, given, view in ((f"W_{k}", W, Wv), (f"b_{k}", b, bv)):
                given = np.asarray(given)
                if given.dtype.kind not in "biuf":
                    raise TypeError(f"{name} must hold real numbers, got dtype {given.dtype}")
                if given.shape != view.shape:
                    raise ValueError(f"{name} must have shape {view.shape}, got {given.shape}")
                view[...] = given
        return theta

    # --- the operations every backend implements -----------------------------------------

    def forward(self, theta: ArrayLike, X: ArrayLike) -> np.ndarray:
        """The network outputs z^L for the rows of X, shape (M, l_L)."""
        theta = self._theta(theta)
        return self._impl.pre_activations(theta, self._X(X, theta.dtype), self.n_layers)

    def pre_activations(self, theta: ArrayLike, X: ArrayLike) -> list[np.ndarray]:
        """[z^1, ..., z^L]: the pre-activations of every layer, z^k of shape (M, l_k) (views
        into one array); z^L is the output. The switching functions of the gradient flow."""
        theta = self._theta(theta)
        Z = self._impl.pre_activations(theta, self._X(X, theta.dtype), 1)
        ends = np.cumsum(self.widths[1:])
        return [Z[:, end - width:end] for end, width in zip(ends, self.widths[1:])]

    def risk(self, theta: ArrayLike, X: ArrayLike, Y: ArrayLike, sample_weight: Optional[ArrayLike] = None) -> float:
        """L(theta) = sum_m w_m loss(z^L(x_m), y_m), with w_m = 1/M unless sample_weight is given."""
        return self._risk_gradient(theta, X, Y, sample_weight, 0, 0.0, False, None)[0]

    def risk_and_gradient(self, theta: ArrayLike, X: ArrayLike, Y: ArrayLike, sample_weight: Optional[ArrayLike] = None,
                          out: Optional[np.ndarray] = None) -> tuple[float, np.ndarray]:
        """(L(theta), G(theta)): the risk and its generalized gradient (docs/math.md §4).

        ``out``, if given, is a writeable C-contiguous array of shape (dim,) and theta's dtype
        that receives G.
        """
        risk, G = self._risk_gradient(theta, X, Y, sample_weight, 0, 0.0, True, out)
        assert G is not None
        return risk, G

    def gradient(self, theta: ArrayLike, X: ArrayLike, Y: ArrayLike, sample_weight: Optional[ArrayLike] = None,
                 out: Optional[np.ndarray] = None) -> np.ndarray:
        """G(theta), the generalized gradient of the risk."""
        return self.risk_and_gradient(theta, X, Y, sample_weight, out)[1]

    def approx_gradient(self, theta: ArrayLike, X: ArrayLike, Y: ArrayLike, r: float, family: str = "cubic",
                        sample_weight: Optional[ArrayLike] = None, out: Optional[np.ndarray] = None) -> np.ndarray:
        """grad L_r(theta): the gradient of the risk of the network whose activation is replaced
        by the approximant A_r of ``family`` (gengrad.activations.FAMILIES; docs/math.md §3)."""
        activations.check_family(family)
        r = _positive(r, "r")
        G = self._risk_gradient(theta, X, Y, sample_weight, _FAMILY_CODES[family], r, True, out)[1]
        assert G is not None
        return G

    def kink_counts(self, theta: ArrayLike, X: ArrayLike) -> np.ndarray:
        """Per hidden layer, the number of (sample, neuron) pairs whose pre-activation is exactly
        at a kink of the activation (docs/math.md §6)."""
        theta = self._theta(theta)
        return self._impl.kink_counts(theta, self._X(X, theta.dtype))

    # --- argument preparation: types and conversions; sizes and values are checked in C++ --

    def _risk_gradient(self, theta: ArrayLike, X: ArrayLike, Y: ArrayLike, sample_weight: Optional[ArrayLike],
                       family: int, r: float, want_gradient: bool,
                       out: Optional[np.ndarray]) -> tuple[float, Optional[np.ndarray]]:
        theta = self._theta(theta)
        X = self._X(X, theta.dtype)
        Y = self._Y(Y, theta.dtype)
        weight = None if sample_weight is None else self._data(sample_weight, "sample_weight", theta.dtype)
        return self._impl.risk_gradient(theta, X, Y, weight, family, r, want_gradient, out)

    def _on_device(self, value: object) -> bool:
        """Whether the CUDA backend reads ``value`` in place (through DLPack)."""
        return self.backend == "cuda" and cuda.is_device_array(value)

    def _theta(self, theta: ArrayLike) -> np.ndarray:
        if self._on_device(theta):
            return theta  # type: ignore[return-value]  # read through DLPack by gengrad._cuda
        theta = _as_ndarray(theta, "theta")
        if isinstance(theta, np.ndarray):
            if theta.dtype not in _FLOAT_DTYPES:
                _float_dtype(theta.dtype, "theta")  # raises
            return theta if theta.flags.c_contiguous else np.ascontiguousarray(theta)
        return _array(theta, "theta", np.float64)

    def _X(self, X: ArrayLike, dtype: DTypeLike) -> np.ndarray:
        return self._data(X, "X", dtype)

    def _data(self, value: ArrayLike, name: str, dtype: DTypeLike) -> np.ndarray:
        """_array, except that the CUDA backend takes device arrays as they are (and a device
        theta's dtype may be a framework's, such as torch.float32)."""
        if self.backend != "cuda":
            return _array(value, name, dtype)
        if self._on_device(value):
            return value  # type: ignore[return-value]
        return _array(value, name, cuda.numpy_dtype(dtype))

    def _Y(self, Y: ArrayLike, dtype: DTypeLike) -> np.ndarray:
        if self._on_device(Y):
            return Y  # type: ignore[return-value]
        dtype = cuda.numpy_dtype(dtype)
        out_width = self.widths[-1]
        Y = _as_ndarray(Y, "Y")
        if self.loss == "cross_entropy" and isinstance(Y, (list, tuple)):
            Y = _labels_or_targets(Y)
        if self.loss == "cross_entropy" and isinstance(Y, np.ndarray) and Y.ndim == 1 and Y.dtype.kind in "iu":
            if len(Y) and (Y.min() < 0 or Y.max() >= out_width):
                raise ValueError(f"Y holds class labels, which must lie in [0, {out_width}), "
                                 f"got labels from {Y.min()} to {Y.max()}")
            return np.eye(out_width, dtype=dtype)[Y]
        Y = _array(Y, "Y", dtype)
        if Y.ndim == 1 and out_width == 1:
            Y = Y.reshape(-1, 1)
        return Y


class _ReferenceBackend:
    """The NumPy reference behind the Network interface (float64 only)."""

    def __init__(self, net: Network):
        self.net = net

    def _check(self, theta: np.ndarray) -> tuple[tuple[int, ...], activations.Activation]:
        if theta.dtype != np.float64:
            raise TypeError("the reference backend computes in float64; theta has dtype "
                            f"{theta.dtype}")
        return self.net.widths, self.net.activation

    def pre_activations(self, theta: np.ndarray, X: np.ndarray, first: int) -> np.ndarray:
        widths, act = self._check(theta)
        self.net._core.pre_activations(theta, X, first)
        return np.hstack(reference.pre_activations(theta, widths, act, X)[first - 1:])

    def risk_gradient(self, theta: np.ndarray, X: np.ndarray, Y: np.ndarray, weight: Optional[np.ndarray],
                      family: int, r: float, want_gradient: bool, out: Optional[np.ndarray]
                      ) -> tuple[float, Optional[np.ndarray]]:
        widths, act = self._check(theta)
        # The compiled core validates sizes and values even here, so both backends reject the
        # same inputs with the same messages.
        self.net._core.risk_gradient(theta, X, Y, weight, 0, 0.0, False, None)
        loss = self.net.loss  # weight None: 1/M each, as in the core
        risk = reference.risk(theta, widths, act, X, Y, loss, weight)
        if not want_gradient:
            return risk, None
        if family == 0:
            grad = reference.generalized_gradient(theta, widths, act, X, Y, loss, weight)
        else:
            name = next(n for n, code in _FAMILY_CODES.items() if code == family)
            grad = reference.approx_gradient(theta, widths, act, X, Y, r, name, loss, weight)
        if out is not None:
            out[...] = grad
            grad = out
        return risk, grad

    def kink_counts(self, theta: np.ndarray, X: np.ndarray) -> np.ndarray:
        widths, act = self._check(theta)
        self.net._core.kink_counts(theta, X)
        return reference.kink_counts(theta, widths, act, X)


def _offset(act: activations.Activation) -> float:
    """The constant of the piecewise-linear form used by the core (kernels.hpp)."""
    if not act.piecewise_linear or not act.kinks:
        return 0.0
    return act.value_at_first_kink - act.slopes[1] * act.kinks[0]


def _check_widths(widths: Any) -> tuple[int, ...]:
    try:
        widths = tuple(widths)
    except TypeError:
        raise TypeError(f"widths must be a sequence of integers, got {type(widths).__name__}") from None
    if not 2 <= len(widths) <= MAX_LAYERS + 1:
        raise ValueError(f"widths must list 2 to {MAX_LAYERS + 1} layer widths (input, hidden..., "
                         f"output), got {len(widths)}")
    for w in widths:
        if isinstance(w, bool) or not isinstance(w, Integral):
            raise TypeError(f"widths must be integers, got {w!r}")
        if not 1 <= int(w) <= MAX_WIDTH:
            raise ValueError(f"every width must be between 1 and 2^62, got widths={widths}")
    return tuple(int(w) for w in widths)


def _float_dtype(dtype: Any, name: str) -> np.dtype:
    try:
        result: np.dtype = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"{name} must be float32 or float64, got {dtype!r}") from None
    if result not in (np.float32, np.float64):
        raise TypeError(f"{name} must have dtype float32 or float64, got {result}")
    return result


def _zeros(shape: tuple[int, ...], dtype: DTypeLike, what: str) -> np.ndarray:
    """np.zeros, whose MemoryError also says what the array was for."""
    try:
        return np.zeros(shape, dtype)
    except MemoryError as error:
        raise MemoryError(f"{what}: {error}") from None


def _as_ndarray(value: ArrayLike, name: str) -> ArrayLike:
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


def _labels_or_targets(Y: Any, dims: int = 1) -> Any:
    """A (nested) list of class labels with ``dims`` dimensions as an integer array, as if it
    had been given as one; anything else as it is."""
    try:
        array = np.asarray(Y)
    except (TypeError, ValueError):
        return Y
    return array if array.ndim == dims and array.dtype.kind in "iu" else Y


def _array(value: Any, name: str, dtype: DTypeLike) -> np.ndarray:
    """value as a C-contiguous array of ``dtype``; arrays (and array-likes with a dtype) of
    another dtype are refused rather than silently converted (a float64 X with a float32 theta
    is usually a mistake)."""
    value = _as_ndarray(value, name)
    if isinstance(value, np.ndarray):
        if value.dtype != dtype:
            raise TypeError(f"{name} has dtype {value.dtype} but theta has dtype {np.dtype(dtype)}; "
                            f"convert it with {name}.astype(np.{np.dtype(dtype)})")
        return value if value.flags.c_contiguous else np.ascontiguousarray(value)
    try:
        return np.ascontiguousarray(value, dtype=dtype)
    except (TypeError, ValueError) as error:
        raise TypeError(f"{name} must be an array of numbers: {error}") from None


def _positive(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise TypeError(f"{name} must be a positive number, got {value!r}")
    number = float(value)
    if not (number > 0 and np.isfinite(number)):
        raise ValueError(f"{name} must be a positive finite number, got {number}")
    return number
