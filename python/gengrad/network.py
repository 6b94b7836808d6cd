"""Fully-connected networks on a flat parameter vector, and their generalized gradients."""
from __future__ import annotations

from typing import Any, Optional, Sequence, Union

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from . import _core, activations, backends, cuda
from .arguments import as_ndarray, check_widths, float_dtype, labels_or_targets, positive, seeded, typed_array, zeros

# The codes and the layer limit are the core's (cpp/include/gengrad/contract.hpp).
LOSSES: tuple[str, ...] = tuple(sorted(_core.LOSS_CODES, key=_core.LOSS_CODES.__getitem__))
BACKENDS = ("cpp", "reference", "cuda")
INIT_SCHEMES = ("he_uniform", "glorot_uniform", "torch")
MAX_LAYERS: int = _core.MAX_LAYERS
_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
ActivationLike = Union[str, activations.Activation]


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
        self.widths = check_widths(widths, MAX_LAYERS)
        self.activation = activations.get(activation, convention)
        if loss not in LOSSES:
            raise ValueError(f"unknown loss {loss!r}; expected one of {', '.join(LOSSES)}")
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; expected one of {', '.join(BACKENDS)}")
        self.loss = loss
        self.backend = backend
        act = self.activation
        kind = "piecewise_linear" if act.piecewise_linear else act.name
        self._model_args: cuda.ModelArgs = (
            list(self.widths), _core.ACTIVATION_CODES[kind], list(act.kinks), list(act.slopes), _offset(act),
            list(act.right_sided), _core.LOSS_CODES[loss])
        #: The compiled core's model of this network: its layout, and the gradient flow's field.
        self.core = _core.Model(*self._model_args)
        #: The backend that computes (gengrad.backends.Backend).
        self.engine: backends.Backend = backends.make(backend, self.core, self._model_args, self.widths,
                                                      self.activation, loss)
        self.layout = [tuple(layer) for layer in self.core.layout()]

    @property
    def dim(self) -> int:
        """d = sum_k l_k (l_{k-1} + 1), the length of theta."""
        return self.core.dim

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
        dtype = float_dtype(dtype, "dtype")
        if scheme is None:
            scheme = "he_uniform" if self.activation.piecewise_linear else "glorot_uniform"
        if scheme not in INIT_SCHEMES:
            raise ValueError(f"unknown init scheme {scheme!r}; expected one of {', '.join(INIT_SCHEMES)}")
        rng = seeded(np.random.default_rng, seed)
        theta = zeros((self.dim,), np.float64, f"init: widths {self.widths} (d = {self.dim})")
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
        theta = self.prepare_theta(theta)
        if theta.shape != (self.dim,):  # the backend checks this for every other method
            raise ValueError(f"theta must have shape ({self.dim},), got {theta.shape}")
        return [(theta[w:w + rows * cols].reshape(rows, cols), theta[b:b + rows])
                for w, b, rows, cols in self.layout]

    def flatten(self, layers: Sequence[tuple[ArrayLike, ArrayLike]], dtype: DTypeLike = np.float64) -> np.ndarray:
        """The theta whose layers are ``layers`` (the inverse of ``layers``)."""
        dtype = float_dtype(dtype, "dtype")
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
        theta = self.prepare_theta(theta)
        return self.engine.pre_activations(theta, self.prepare_data(X, "X", theta.dtype), self.n_layers)

    def pre_activations(self, theta: ArrayLike, X: ArrayLike) -> list[np.ndarray]:
        """[z^1, ..., z^L]: the pre-activations of every layer, z^k of shape (M, l_k) (views
        into one array); z^L is the output. The switching functions of the gradient flow."""
        theta = self.prepare_theta(theta)
        Z = self.engine.pre_activations(theta, self.prepare_data(X, "X", theta.dtype), 1)
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
        r = positive(r, "r")
        G = self._risk_gradient(theta, X, Y, sample_weight, _core.FAMILY_CODES[family], r, True, out)[1]
        assert G is not None
        return G

    def kink_counts(self, theta: ArrayLike, X: ArrayLike) -> np.ndarray:
        """Per hidden layer, the number of (sample, neuron) pairs whose pre-activation is exactly
        at a kink of the activation (docs/math.md §6)."""
        theta = self.prepare_theta(theta)
        return self.engine.kink_counts(theta, self.prepare_data(X, "X", theta.dtype))

    # --- argument preparation (also for Ensemble and the flow): types and conversions; sizes
    # --- and values are the backend's to check

    def _risk_gradient(self, theta: ArrayLike, X: ArrayLike, Y: ArrayLike, sample_weight: Optional[ArrayLike],
                       family: int, r: float, want_gradient: bool,
                       out: Optional[np.ndarray]) -> tuple[float, Optional[np.ndarray]]:
        theta = self.prepare_theta(theta)
        X = self.prepare_data(X, "X", theta.dtype)
        Y = self.prepare_targets(Y, theta.dtype)
        weight = None if sample_weight is None else self.prepare_data(sample_weight, "sample_weight", theta.dtype)
        return self.engine.risk_gradient(theta, X, Y, weight, family, r, want_gradient, out)

    def on_device(self, value: object) -> bool:
        """Whether the CUDA backend reads ``value`` in place (through DLPack)."""
        return self.backend == "cuda" and cuda.is_device_array(value)

    def prepare_theta(self, theta: ArrayLike) -> np.ndarray:
        """theta (or an ensemble's thetas) as a C-contiguous float32/float64 array."""
        if self.on_device(theta):
            return theta  # type: ignore[return-value]  # read through DLPack by gengrad._cuda
        theta = as_ndarray(theta, "theta")
        if isinstance(theta, np.ndarray):
            if theta.dtype not in _FLOAT_DTYPES:
                float_dtype(theta.dtype, "theta")  # raises
            return theta if theta.flags.c_contiguous else np.ascontiguousarray(theta)
        return typed_array(theta, "theta", np.float64)

    def prepare_data(self, value: ArrayLike, name: str, dtype: DTypeLike) -> np.ndarray:
        """typed_array, except that the CUDA backend takes device arrays as they are (and a device
        theta's dtype may be a framework's, such as torch.float32)."""
        if self.backend != "cuda":
            return typed_array(value, name, dtype)
        if self.on_device(value):
            return value  # type: ignore[return-value]
        return typed_array(value, name, cuda.numpy_dtype(dtype))

    def prepare_targets(self, Y: ArrayLike, dtype: DTypeLike) -> np.ndarray:
        """Y as the backends take it: class labels (cross-entropy) become one-hot rows, a vector
        for one output a column."""
        if self.on_device(Y):
            return Y  # type: ignore[return-value]
        dtype = cuda.numpy_dtype(dtype)
        out_width = self.widths[-1]
        Y = as_ndarray(Y, "Y")
        if self.loss == "cross_entropy" and isinstance(Y, (list, tuple)):
            Y = labels_or_targets(Y)
        if self.loss == "cross_entropy" and isinstance(Y, np.ndarray) and Y.ndim == 1 and Y.dtype.kind in "iu":
            if len(Y) and (Y.min() < 0 or Y.max() >= out_width):
                raise ValueError(f"Y holds class labels, which must lie in [0, {out_width}), "
                                 f"got labels from {Y.min()} to {Y.max()}")
            return np.eye(out_width, dtype=dtype)[Y]
        Y = typed_array(Y, "Y", dtype)
        if Y.ndim == 1 and out_width == 1:
            Y = Y.reshape(-1, 1)
        return Y


def _offset(act: activations.Activation) -> float:
    """The constant of the piecewise-linear form used by the core (contract.hpp)."""
    if not act.piecewise_linear or not act.kinks:
        return 0.0
    return act.value_at_first_kink - act.slopes[1] * act.kinks[0]
