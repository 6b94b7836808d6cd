"""Every implementation the cross-implementation suite holds to the reference, behind one
interface: gengrad's compiled core (once per kernel build the CPU runs), gengrad's reference
backend, the CUDA backend on the GPU (where there is one) and its kernels' phases emulated on
the CPU (where gengrad._cuda is built), PyTorch autograd and JAX, the last two when installed.

A peer fixes its own derivative at each kink. ``kink_values(activation)`` says which, as
measured for each peer (and branching on the peer's version where that changed), so the
suite compares the peer with the reference *under the peer's convention*. Where the peer's
value is not a one-sided derivative (torch's abs'(0) = 0), gengrad refuses that convention and
the suite compares only data that hits no kink; test_peer_conventions.py shows the difference.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

import gengrad
from gengrad import activations as A


@dataclass
class Result:
    risk: float
    G: np.ndarray
    pre_activations: list          # [z^1, ..., z^L] as NumPy arrays
    kink_counts: Optional[np.ndarray] = None   # the backend's own count, where it has one


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("+")[0].split(".")[:3] if part.isdigit())


class Backend:
    """gengrad's compiled core with one kernel build, or gengrad's reference backend."""

    dtypes = (np.float32, np.float64)
    #: whether each new array shape costs a compilation (so it runs few shapes)
    compiles_per_shape = False

    def __init__(self, name: str, backend: str = "cpp", isa: Optional[str] = None):
        self.name, self.backend, self.isa = name, backend, isa
        if backend == "reference":
            self.dtypes = (np.float64,)

    def available(self) -> Optional[str]:
        """None, or why this backend cannot run here."""
        return None

    def kink_values(self, act: A.Activation) -> tuple:
        return act.derivative_at_kinks

    def evaluate(self, widths, act, loss, theta, X, Y, weight) -> Result:
        net = gengrad.Network(widths, act, loss=loss, backend=self.backend)
        if self.isa:
            gengrad.select_isa(self.isa)
        try:
            risk, G = net.risk_and_gradient(theta, X, Y, sample_weight=weight)
            return Result(risk, G, net.pre_activations(theta, X), net.kink_counts(theta, X))
        finally:
            gengrad.select_isa("auto")


class Cuda(Backend):
    """Network(backend="cuda"): the fused kernels on the GPU."""

    def __init__(self):
        super().__init__("cuda", "cuda")

    def available(self) -> Optional[str]:
        return gengrad.cuda.unavailable()


class CudaEmulated(Backend):
    """The CUDA backend's kernels with their phases run thread after thread on the CPU: the
    same host/device code (gengrad/fused.hpp) and order of every sum as on the device, so the
    kernels' arithmetic is checked where there is no GPU."""

    def __init__(self):
        super().__init__("cuda-emulated", "cpp")

    def available(self) -> Optional[str]:
        return None if gengrad.cuda.built() else gengrad.cuda.unavailable()

    def evaluate(self, widths, act, loss, theta, X, Y, weight) -> Result:
        net = gengrad.Network(widths, act, loss=loss)
        net.engine = gengrad.cuda.model(net._model_args, emulate=True)
        risk, G = net.risk_and_gradient(theta, X, Y, sample_weight=weight)
        return Result(risk, G, net.pre_activations(theta, X), net.kink_counts(theta, X))


class PeerBackend(Backend):
    """A peer library: its own named activation functions and autograd."""

    module: str

    def available(self) -> Optional[str]:
        try:
            __import__(self.module)
        except ImportError:
            return f"{self.module} is not installed"
        return None

    def activation(self, act: A.Activation) -> tuple[Callable, tuple]:
        """The peer's function for ``act`` and its derivative at each kink."""
        raise NotImplementedError

    def kink_values(self, act: A.Activation) -> tuple:
        return self.activation(act)[1]


class Torch(PeerBackend):
    module = "torch"

    def __init__(self):
        super().__init__("torch")

    def activation(self, act):
        import torch
        import torch.nn.functional as F
        name, alpha = act.name, (act.params or (0.0,))[0]    # alpha: leaky_relu's slope
        # torch.clamp with number bounds: 1 at the bounds up to 2.13, 0 from 2.14 (PR #191142)
        clamp_value = 1.0 if _version(torch.__version__) < (2, 14) else 0.0
        table = {
            "relu": (F.relu, (0.0,)),
            "leaky_relu": (lambda z: F.leaky_relu(z, alpha), (alpha,)),
            "hardtanh": (lambda z: F.hardtanh(z, *act.kinks), (0.0, 0.0)),
            "relu6": (F.relu6, (0.0, 0.0)),
            "clip": (lambda z: torch.clamp(z, *act.kinks), (clamp_value,) * 2),
            "abs": (torch.abs, (0.0,)),        # sgn(0) = 0: not one-sided
            "identity": (lambda z: z, ()),
            "tanh": (torch.tanh, ()), "sigmoid": (torch.sigmoid, ()),
            # F.softplus is z itself above threshold=20, off by e^-20; above 40 that is rounding
            "softplus": (lambda z: F.softplus(z, threshold=40.0), ()),
            "gelu": (F.gelu, ()), "silu": (F.silu, ()),
        }
        return table[name]

    def evaluate(self, widths, act, loss, theta, X, Y, weight) -> Result:
        import torch
        import torch.nn.functional as F
        f = self.activation(act)[0]
        t = torch.tensor(theta, requires_grad=True)
        h, zs = torch.from_numpy(X), []
        layout = gengrad.reference.layout(widths)
        for k, (w, b, rows, cols) in enumerate(layout):
            zs.append(h @ t[w:w + rows * cols].reshape(rows, cols).T + t[b:b + rows])
            h = f(zs[-1]) if k < len(layout) - 1 else zs[-1]
        target = torch.from_numpy(Y)
        if loss == "squared_error":
            per_sample = ((zs[-1] - target) ** 2).sum(dim=1)
        else:
            per_sample = F.cross_entropy(zs[-1], target, reduction="none")  # soft targets
        risk = (torch.from_numpy(_weights(weight, X)) * per_sample).sum()
        risk.backward()
        return Result(risk.item(), t.grad.numpy(), [z.detach().numpy() for z in zs])


class Jax(PeerBackend):
    module = "jax"
    # eager JAX compiles every primitive for every new shape: about 1 s per activation and
    # architecture here
    compiles_per_shape = True

    def __init__(self):
        super().__init__("jax")

    def available(self) -> Optional[str]:
        reason = super().available()
        if reason is None:
            import jax
            jax.config.update("jax_enable_x64", True)
        return reason

    def activation(self, act):
        import jax
        import jax.numpy as jnp
        name, alpha = act.name, (act.params or (0.0,))[0]
        # relu6 takes 0 at both bounds since 2023-03 (9c39b6f); before, min/max ties gave 1/2
        relu6_value = 0.0 if _version(jax.__version__) >= (0, 4, 6) else 0.5

        def clamp(z):
            lo, hi = (jnp.asarray(v, z.dtype) for v in act.kinks)
            return jax.lax.clamp(lo, z, hi)

        table = {
            "relu": (jax.nn.relu, (0.0,)),
            "leaky_relu": (lambda z: jax.nn.leaky_relu(z, alpha), (1.0,)),  # where(x >= 0, ...)
            "relu6": (jax.nn.relu6, (relu6_value,) * 2),
            "clip": (clamp, (0.0, 0.0)),
            "abs": (jnp.abs, (1.0,)),
            "identity": (lambda z: z, ()),
            "tanh": (jnp.tanh, ()), "sigmoid": (jax.nn.sigmoid, ()),
            "softplus": (jax.nn.softplus, ()),
            "gelu": (lambda z: jax.nn.gelu(z, approximate=False), ()), "silu": (jax.nn.silu, ()),
        }
        if name == "hardtanh":
            # jax.nn.hard_tanh is clip to [-1, 1] with slope 1 at both bounds; other bounds: clamp
            return (jax.nn.hard_tanh, (1.0, 1.0)) if act.kinks == (-1.0, 1.0) else \
                   (clamp, (0.0, 0.0))
        return table[name]

    def evaluate(self, widths, act, loss, theta, X, Y, weight) -> Result:
        import jax
        import jax.numpy as jnp
        f = self.activation(act)[0]
        layout = gengrad.reference.layout(widths)
        mass = jnp.asarray(_weights(weight, X))

        def risk(t):
            h, zs = jnp.asarray(X), []
            for k, (w, b, rows, cols) in enumerate(layout):
                zs.append(h @ t[w:w + rows * cols].reshape(rows, cols).T + t[b:b + rows])
                h = f(zs[-1]) if k < len(layout) - 1 else zs[-1]
            if loss == "squared_error":
                per_sample = jnp.sum((zs[-1] - Y) ** 2, axis=1)
            else:
                per_sample = -jnp.sum(Y * jax.nn.log_softmax(zs[-1], axis=1), axis=1)
            return jnp.sum(mass * per_sample), zs

        (value, zs), G = jax.value_and_grad(risk, has_aux=True)(jnp.asarray(theta))
        return Result(float(value), np.asarray(G), [np.asarray(z) for z in zs])


def _weights(weight, X) -> np.ndarray:
    return np.full(len(X), 1.0 / len(X), X.dtype) if weight is None else weight


BACKENDS = ([Backend(f"cpp-{isa}", "cpp", isa) for isa in gengrad.build_info()["isas_supported"]]
            + [Backend("reference", "reference"), Cuda(), CudaEmulated(), Torch(), Jax()])


def peer_activation(backend: Backend, act: A.Activation) -> Optional[A.Activation]:
    """``act`` with the convention ``backend`` uses, or None when that is not one-sided."""
    values = backend.kink_values(act)
    if not act.kinks:
        return act
    try:
        return act.with_convention(values)
    except ValueError:
        return None
