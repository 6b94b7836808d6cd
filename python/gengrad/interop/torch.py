"""PyTorch adapter: the risk L(theta) of a gengrad Network as a differentiable torch function of
a flat parameter tensor theta, whose backward is gengrad's generalized gradient G(theta) (so the
convention at the kinks is the Network's, not whatever torch's own ops would pick: torch's
``maximum(z, 0)`` gives 1/2 at z = 0, which is not a one-sided derivative).

    net = gengrad.Network((2, 16, 1), "relu")
    model = NetworkRisk(net, dtype=torch.float64)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    loss = model(X, Y); loss.backward(); optimizer.step()

Only theta is differentiated: X, Y and sample_weight must not require grad (a ValueError says
so rather than returning a silent zero). CPU tensors only; float32 or float64.
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Union

import numpy as np
import torch
from torch.autograd.function import once_differentiable

from ..network import Network

ArrayLike = Union[torch.Tensor, np.ndarray]


class RiskFunction(torch.autograd.Function):
    """``RiskFunction.apply(theta, X, Y, network, sample_weight)``: the risk, a 0-d tensor of
    theta's dtype; backward gives grad_output * G(theta). Prefer ``risk(...)``, which checks
    its arguments first."""

    @staticmethod
    def forward(ctx: Any, theta: torch.Tensor, X: ArrayLike, Y: ArrayLike, network: Network,
                sample_weight: Optional[ArrayLike] = None) -> torch.Tensor:
        theta_np = _numpy(theta, "theta")
        X_np, Y_np = _numpy(X, "X"), _numpy(Y, "Y")
        w_np = None if sample_weight is None else _numpy(sample_weight, "sample_weight")
        if ctx.needs_input_grad[0]:
            value, G = network.risk_and_gradient(theta_np, X_np, Y_np, w_np)
            ctx.save_for_backward(torch.from_numpy(G))
        else:
            value = network.risk(theta_np, X_np, Y_np, w_np)
        return torch.tensor(value, dtype=theta.dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_risk: torch.Tensor) -> tuple[Optional[torch.Tensor], ...]:
        (G,) = ctx.saved_tensors
        return grad_risk * G, None, None, None, None


def risk(network: Network, theta: torch.Tensor, X: ArrayLike, Y: ArrayLike,
         sample_weight: Optional[ArrayLike] = None) -> torch.Tensor:
    """L(theta) as a differentiable function of the 1-d tensor theta (length network.dim)."""
    if not isinstance(network, Network):
        raise TypeError(f"network must be a gengrad.Network, got {type(network).__name__}")
    if not isinstance(theta, torch.Tensor):
        raise TypeError(f"theta must be a torch.Tensor, got {type(theta).__name__}")
    for name, value in (("X", X), ("Y", Y), ("sample_weight", sample_weight)):
        if isinstance(value, torch.Tensor) and value.requires_grad:
            raise ValueError(f"{name} requires grad, but gengrad differentiates the risk with "
                             f"respect to theta only; pass {name}.detach()")
    apply: Callable[..., torch.Tensor] = RiskFunction.apply  # untyped in torch
    return apply(theta, X, Y, network, sample_weight)


class NetworkRisk(torch.nn.Module):
    """An ``nn.Module`` holding theta as one flat ``nn.Parameter`` (the layout of
    ``Network.layers``, which is that of ``parameters_to_vector`` of the equivalent
    ``nn.Sequential``); calling it returns the risk, whose backward is G(theta).

    theta: initial values (tensor or array of length network.dim), or None for
    ``network.init(seed, dtype)``.
    """

    def __init__(self, network: Network, theta: Optional[ArrayLike] = None, *, seed: int = 0,
                 dtype: torch.dtype = torch.float32):
        super().__init__()
        if not isinstance(network, Network):
            raise TypeError(f"network must be a gengrad.Network, got {type(network).__name__}")
        self.network = network
        if theta is None:
            initial = torch.from_numpy(network.init(seed, _numpy_dtype(dtype)))
        else:
            initial = torch.as_tensor(theta).detach().clone()
            if initial.shape != (network.dim,):
                raise ValueError(f"theta must have shape ({network.dim},), got {tuple(initial.shape)}")
        self.theta = torch.nn.Parameter(initial)

    def forward(self, X: ArrayLike, Y: ArrayLike, sample_weight: Optional[ArrayLike] = None) -> torch.Tensor:
        return risk(self.network, self.theta, X, Y, sample_weight)

    def predict(self, X: ArrayLike) -> torch.Tensor:
        """The network outputs z^L (no gradient: the adapter differentiates the risk only)."""
        return torch.from_numpy(self.network.forward(_numpy(self.theta, "theta"), _numpy(X, "X")))

    def layers(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Views (W_k, b_k) into theta, as in ``Network.layers``."""
        return [(self.theta[w:w + rows * cols].view(rows, cols), self.theta[b:b + rows])
                for w, b, rows, cols in self.network.layout]


def _numpy(value: ArrayLike, name: str) -> Any:
    if isinstance(value, torch.Tensor):
        if value.device.type != "cpu":
            raise ValueError(f"{name} must be on the CPU (gengrad's core runs there), got device {value.device}")
        return value.detach().numpy()
    return value


def _numpy_dtype(dtype: torch.dtype) -> Any:
    if dtype not in (torch.float32, torch.float64):
        raise TypeError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
    return np.float32 if dtype == torch.float32 else np.float64
