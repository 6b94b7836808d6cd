"""Ensembles: n networks of one architecture evaluated in one call."""
from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from . import _core, activations
from .arguments import as_ndarray, float_dtype, labels_or_targets, positive, seeded, zeros
from .network import ActivationLike, Network


class Ensemble:
    """``n`` networks with widths ``widths`` whose parameters are the rows of ``thetas`` (n, d).

    X and Y are either shared by all networks ((M, l_0), (M, l_L)) or one per network ((n, M,
    l_0), (n, M, l_L)); ``sample_weight`` likewise ((M,) or (n, M)). One call computes every
    risk and generalized gradient, one network per thread; network i's results are bitwise
    those of ``Network.risk_and_gradient`` on ``thetas[i]``. ``backend="cuda"`` computes all
    networks in one GPU launch (arguments as for Network(backend="cuda")); ``"reference"`` loops
    over the NumPy reference.
    """

    def __init__(self, widths: Sequence[int], n: int, activation: ActivationLike = "relu",
                 convention: activations.Convention = None, loss: str = "squared_error", backend: str = "cpp"):
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
            raise TypeError(f"n must be an integer, got {n!r}")
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        self.n = int(n)
        self.network = Network(widths, activation, convention, loss, backend)
        if self.n * self.dim > 2**63 - 1:  # the core counts the (n, d) parameters in int64
            raise ValueError(f"n = {self.n} networks of d = {self.dim} parameters would have more than "
                             "2^63 - 1 parameters")

    @property
    def dim(self) -> int:
        return self.network.dim

    @property
    def widths(self) -> tuple[int, ...]:
        return self.network.widths

    def __repr__(self) -> str:
        return f"Ensemble(n={self.n}, {self.network!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled and copied by definition, as Network."""
        net = self.network
        return (Ensemble, (net.widths, self.n, net.activation, None, net.loss, net.backend))

    def init(self, seed: Any = 0, dtype: DTypeLike = np.float64, scheme: Optional[str] = None) -> np.ndarray:
        """(n, d) parameters; network i is initialised from the i-th child of SeedSequence(seed)
        with ``Network.init``'s scheme."""
        # Allocated first (an impossible n fails here, not after spawning n seeds); one child at a
        # time: spawn(1) n times gives the children of spawn(n).
        thetas = zeros((self.n, self.dim), float_dtype(dtype, "dtype"),
                        f"init: n = {self.n} networks of d = {self.dim} parameters")
        parent = seeded(np.random.SeedSequence, seed)
        for row in thetas:
            row[...] = self.network.init(parent.spawn(1)[0], dtype, scheme)
        return thetas

    def risk(self, thetas: ArrayLike, X: ArrayLike, Y: ArrayLike,
             sample_weight: Optional[ArrayLike] = None) -> np.ndarray:
        """The n risks, shape (n,), float64."""
        return self._call(thetas, X, Y, sample_weight, 0, 0.0, False, None)[0]

    def risk_and_gradient(self, thetas: ArrayLike, X: ArrayLike, Y: ArrayLike,
                          sample_weight: Optional[ArrayLike] = None,
                          out: Optional[np.ndarray] = None) -> tuple[np.ndarray, np.ndarray]:
        """(risks (n,), G (n, d)): every network's risk and generalized gradient."""
        risks, G = self._call(thetas, X, Y, sample_weight, 0, 0.0, True, out)
        assert G is not None
        return risks, G

    def gradient(self, thetas: ArrayLike, X: ArrayLike, Y: ArrayLike, sample_weight: Optional[ArrayLike] = None,
                 out: Optional[np.ndarray] = None) -> np.ndarray:
        return self.risk_and_gradient(thetas, X, Y, sample_weight, out)[1]

    def approx_gradient(self, thetas: ArrayLike, X: ArrayLike, Y: ArrayLike, r: float, family: str = "cubic",
                        sample_weight: Optional[ArrayLike] = None, out: Optional[np.ndarray] = None) -> np.ndarray:
        """grad L_r for every network (see Network.approx_gradient)."""
        activations.check_family(family)
        r = positive(r, "r")
        G = self._call(thetas, X, Y, sample_weight, _core.FAMILY_CODES[family], r, True, out)[1]
        assert G is not None
        return G

    def step(self, thetas: np.ndarray, X: ArrayLike, Y: ArrayLike, lr: float,
             sample_weight: Optional[ArrayLike] = None) -> np.ndarray:
        """One gradient-descent step theta_i <- theta_i - lr * G(theta_i) for all networks, in
        place; returns the risks before the step."""
        lr = positive(lr, "lr")
        if not (isinstance(thetas, np.ndarray) and thetas.flags.c_contiguous and thetas.flags.writeable):
            raise ValueError("thetas must be a writeable C-contiguous array to be updated in place")
        risks, G = self.risk_and_gradient(thetas, X, Y, sample_weight)
        G *= lr
        thetas -= G
        return risks

    def forward(self, thetas: ArrayLike, X: Any) -> np.ndarray:
        """Outputs (n, M, l_L) at X (M, l_0) or, one per network, (n, M, l_0); network i's are
        bitwise those of Network.forward on thetas[i]."""
        thetas = self._thetas(thetas)
        return self.network.engine.ensemble_pre_activations(thetas, self._inputs(X, thetas), self.network.n_layers)

    def kink_counts(self, thetas: ArrayLike, X: Any) -> np.ndarray:
        """Exact kink hits per network and hidden layer, shape (n, L-1) (X as for forward)."""
        thetas = self._thetas(thetas)
        return self.network.engine.ensemble_kink_counts(thetas, self._inputs(X, thetas))

    def _inputs(self, X: Any, thetas: np.ndarray) -> np.ndarray:
        return self.network.prepare_data(X, "X", thetas.dtype)

    def _thetas(self, thetas: ArrayLike) -> np.ndarray:
        thetas = self.network.prepare_theta(thetas)
        if thetas.shape != (self.n, self.dim):
            raise ValueError(f"thetas must have shape ({self.n}, {self.dim}), got {thetas.shape}")
        return thetas

    def arguments(self, thetas: ArrayLike, X: ArrayLike, Y: ArrayLike, sample_weight: Optional[ArrayLike]
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, Optional[np.ndarray]]:
        """thetas, X, Y and the sample weights as the backends' ensemble calls take them (class
        labels become one-hot rows; sizes are checked there); also the flow's."""
        net = self.network
        thetas = self._thetas(thetas)
        dtype = thetas.dtype
        X = net.prepare_data(X, "X", dtype)
        if not net.on_device(Y):
            Y = as_ndarray(Y, "Y")
            if net.loss == "cross_entropy" and isinstance(Y, (list, tuple)):
                Y = labels_or_targets(Y, 2)  # labels per network as nested lists: as an array
        if (net.loss == "cross_entropy" and isinstance(Y, np.ndarray) and Y.ndim == 2
                and Y.dtype.kind in "iu"):  # class labels, one row per network
            _check_label_rows(Y, self.n, X.shape[-2] if X.ndim >= 2 else -1, self.widths[-1])
            Y = np.stack([net.prepare_targets(labels, dtype) for labels in Y])
        else:
            Y = net.prepare_targets(Y, dtype)
        weight = None if sample_weight is None else net.prepare_data(sample_weight, "sample_weight", dtype)
        return thetas, X, Y, weight

    def _call(self, thetas: ArrayLike, X: ArrayLike, Y: ArrayLike, sample_weight: Optional[ArrayLike], family: int,
              r: float, want_gradient: bool, out: Optional[np.ndarray]) -> tuple[np.ndarray, Optional[np.ndarray]]:
        thetas, X, Y, weight = self.arguments(thetas, X, Y, sample_weight)
        return self.network.engine.ensemble_risk_gradient(thetas, X, Y, weight, family, r, want_gradient, out)


def _check_label_rows(Y: np.ndarray, n: int, M: int, classes: int) -> None:
    """An integer Y of two dimensions is class labels, one row of M per network: shape (n, M).
    One-hot targets must be floating, or they could not be told from labels where n = M."""
    if Y.shape != (n, M):
        raise ValueError(f"an integer Y of two dimensions holds class labels, one row per network: shape "
                         f"({n}, {M}), got {Y.shape}" + (" (for one-hot targets pass floats: Y.astype(float))"
                                                        if Y.shape == (M, classes) else ""))
    if M == n and classes == M and np.isin(Y, (0, 1)).all() and (Y.sum(axis=1) == 1).all():
        raise ValueError(f"Y of shape ({n}, {M}) with 0/1 rows that each sum to 1 is ambiguous here (n = M = "
                         f"{M} classes): labels per network, or one-hot targets? Pass one-hot targets as floats "
                         "(Y.astype(float)); labels as they are only where some row is not one-hot")
