"""JAX adapter: the risk L(theta) of a gengrad Network as a JAX function with a
``jax.custom_vjp`` whose backward is gengrad's generalized gradient G(theta). It runs the
compiled core on the host through ``jax.pure_callback``, so it works under ``jit`` and ``grad``
and, one network after another, under ``vmap``.

    risk = gengrad.interop.jax.risk_function(gengrad.Network((2, 16, 1), "relu"))
    value, G = jax.value_and_grad(risk)(theta, X, Y)

Only theta is differentiated: differentiating with respect to X, Y or sample_weight is a
ValueError (not a silent zero). float32, or float64 with ``jax_enable_x64``.
"""
from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from ..network import Network

Risk = Callable[..., jax.Array]


def risk_function(network: Network) -> Risk:
    """``risk(theta, X, Y, sample_weight=None)``: L(theta), a 0-d array of theta's dtype."""
    if not isinstance(network, Network):
        raise TypeError(f"network must be a gengrad.Network, got {type(network).__name__}")

    # The callbacks receive jax Arrays: made NumPy arrays first, since the Network reads other
    # array-likes as float64.
    def host_risk(theta: Any, X: Any, Y: Any, weight: Any) -> np.ndarray:
        theta, X, Y, weight = _numpy(theta, X, Y, weight)
        return np.asarray(network.risk(theta, X, Y, weight), theta.dtype)

    def host_risk_and_gradient(theta: Any, X: Any, Y: Any, weight: Any) -> tuple[np.ndarray, np.ndarray]:
        theta, X, Y, weight = _numpy(theta, X, Y, weight)
        value, G = network.risk_and_gradient(theta, X, Y, weight)
        return np.asarray(value, theta.dtype), G

    def call(host: Callable[..., Any], with_gradient: bool, theta: Any, X: Any, Y: Any, weight: Any) -> Any:
        theta = jnp.asarray(theta)
        if theta.ndim != 1 or theta.dtype not in (jnp.float32, jnp.float64):
            raise TypeError(f"theta must be a 1-d float32 or float64 array, got shape {theta.shape} "
                            f"and dtype {theta.dtype}")
        if not any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree_util.tree_leaves((theta, X, Y, weight))):
            # Concrete arrays (no jit): call directly, so bad input raises gengrad's own
            # TypeError/ValueError; inside jit, JAX reports it as a JaxRuntimeError carrying it.
            return jax.tree_util.tree_map(jnp.asarray, host(theta, X, Y, weight))
        value = jax.ShapeDtypeStruct((), theta.dtype)
        shapes = (value, jax.ShapeDtypeStruct(theta.shape, theta.dtype)) if with_gradient else value
        return jax.pure_callback(host, shapes, theta, X, Y, weight, vmap_method="sequential")

    @jax.custom_vjp
    def risk(theta: Any, X: Any, Y: Any, sample_weight: Any = None) -> Any:
        return call(host_risk, False, theta, X, Y, sample_weight)

    def forward(theta: Any, X: Any, Y: Any, sample_weight: Any) -> tuple[Any, Any]:
        for name, argument in (("X", X), ("Y", Y), ("sample_weight", sample_weight)):
            if any(leaf.perturbed for leaf in jax.tree_util.tree_leaves(argument)):
                raise ValueError(f"gengrad differentiates the risk with respect to theta only; "
                                 f"{name} must not be differentiated")
        def unwrap(argument: Any) -> Any:
            return jax.tree_util.tree_map(lambda leaf: leaf.value, argument)

        value, G = call(host_risk_and_gradient, True, theta.value, unwrap(X), unwrap(Y),
                        unwrap(sample_weight))
        return value, G

    def backward(G: Any, grad_risk: Any) -> tuple[Any, None, None, None]:
        return grad_risk * G, None, None, None

    risk.defvjp(forward, backward, symbolic_zeros=True)
    return risk


def _numpy(*arrays: Any) -> list[Any]:
    return [None if a is None else np.asarray(a) for a in arrays]
