"""Where a peer's derivative at a kink is not one of the one-sided derivatives, its "gradient"
need not be a limiting Fréchet subgradient; gengrad's G always is (docs/math.md §3, §6; the
peers' values at kinks are recorded in tests/backends.py).

The docs/math.md §6 network with the kink moved to κ: widths (1,1,1), θ = (w, b, v, c) =
(1, κ, -1, 1 + a(κ)), one datum (0, 0), so z = b = κ sits on the kink and
L = (c - a(b))², dL/db = -2 a'(κ). The kink of L in b is concave for these activations, so
the limiting subdifferential is {G_left, G_right} (the one-sided conventions); a value strictly
between the one-sided derivatives gives a vector in their convex hull (a Clarke subgradient)
but not in the set. Each test shows the difference at the kink, certifies gengrad's G for both
one-sided conventions with the witness of docs/math.md §5, and shows that the peer's vector is none
of the witness limits and far from every gradient at nearby differentiable points.
"""
import numpy as np
import pytest

import gengrad
from backends import _version
from gengrad import activations as A
from gengrad import verify as V


def _torch(function):
    def gradient(theta):
        import torch
        t = torch.tensor(theta, requires_grad=True)
        w, b, v, c = t
        ((v * function(w * 0.0 + b) + c) ** 2).backward()
        return t.grad.numpy()
    return gradient


def _jax(function):
    def gradient(theta):
        import jax
        jax.config.update("jax_enable_x64", True)
        return np.asarray(jax.grad(lambda t: (t[2] * function(t[0] * 0.0 + t[1]) + t[3]) ** 2)(
            np.asarray(theta)))
    return gradient


def _peers():
    """(id, activation, kink, the peer's gradient function, its derivative at the kink)."""
    cases = []
    try:
        import torch
        newer = _version(torch.__version__) >= (2, 14)
        cases += [
            ("torch.abs", "abs", 0.0, _torch(torch.abs), 0.0),                     # sgn(0) = 0
            ("torch.maximum(x,0)", "relu", 0.0,
             _torch(lambda z: torch.maximum(z, torch.zeros_like(z))), 0.5),          # tie: 1/2
            # Tensor-bound clamp: dx = 1 at a tie up to 2.13 (one-sided), 1/2 from 2.14
            ("torch.clamp(x,min=Tensor)", "relu", 0.0,
             _torch(lambda z: torch.clamp(z, min=torch.zeros_like(z))), 0.5 if newer else 1.0),
        ]
    except ImportError:
        pass
    try:
        import jax.numpy as jnp
        cases += [
            ("jnp.maximum(x,0)", "relu", 0.0, _jax(lambda z: jnp.maximum(z, 0.0)), 0.5),
            ("jnp.clip(x,0,6)", "relu6", 0.0, _jax(lambda z: jnp.clip(z, 0.0, 6.0)), 0.5),
            ("jnp.clip(x,-1,1)", "hardtanh", -1.0, _jax(lambda z: jnp.clip(z, -1.0, 1.0)), 0.5),
        ]
    except ImportError:
        pass
    return cases


PEERS = _peers()


def _example(act: A.Activation, kink: float):
    a_kink = float(gengrad.reference.activation_value(act, kink))
    return np.array([1.0, kink, -1.0, 1.0 + a_kink]), np.array([[0.0]]), np.array([[0.0]])


def _nearby_gradients(net, theta, X, Y, n=200, radius=1e-7):
    """Gradients at random points within ``radius`` of θ where no pre-activation hits a kink
    (so L is C¹ there and G = ∇L): every limit of them is a limiting subgradient."""
    rng = np.random.default_rng(0)
    grads = []
    for _ in range(n):
        near = theta + radius * rng.standard_normal(theta.shape)
        assert net.kink_counts(near, X).sum() == 0
        grads.append(net.gradient(near, X, Y))
    return np.array(grads)


@pytest.mark.parametrize("peer,name,kink,peer_gradient,peer_value", PEERS,
                         ids=[p[0] for p in PEERS])
def test_peer_value_at_a_kink(peer, name, kink, peer_gradient, peer_value):
    act = A.get(name)
    i = act.kinks.index(kink)
    left, right = act.slopes[i], act.slopes[i + 1]
    theta, X, Y = _example(act, kink)
    G_peer = peer_gradient(theta)
    np.testing.assert_allclose(G_peer[1], -2 * peer_value, atol=1e-15)  # the value tests/backends.py lists

    limits = {}
    for side in ("left", "right"):       # only kink i is hit: the others' sides do not matter
        net = gengrad.Network((1, 1, 1), act, side)
        assert net.kink_counts(theta, X).tolist() == [1]
        cert = V.subgradient_certificate(net, theta, X, Y)
        assert cert.passed, cert
        limits[side] = cert.G
    np.testing.assert_array_equal(limits["left"] - limits["right"], [0, 2 * (right - left), 0, 0])

    nearby = _nearby_gradients(net, theta, X, Y)
    # the nearby gradients come close to both witness limits, and only to them
    for G in limits.values():
        assert np.linalg.norm(nearby - G, axis=1).min() <= 1e-5
    assert all(min(np.linalg.norm(g - G) for G in limits.values()) <= 1e-5 for g in nearby)

    if peer_value in (left, right):
        # a one-sided value: the peer computes gengrad's G for that convention
        side = "left" if peer_value == left else "right"
        np.testing.assert_allclose(G_peer, limits[side], rtol=0, atol=1e-14)
        return
    with pytest.raises(ValueError, match="one-sided"):
        gengrad.Network((1, 1, 1), act.with_convention((peer_value,) * len(act.kinks)))
    # strictly between: a Clarke subgradient (in the hull of the limits) ...
    t = (peer_value - left) / (right - left)
    np.testing.assert_allclose(G_peer, (1 - t) * limits["left"] + t * limits["right"], atol=1e-14)
    # ... but none of the witness limits, and far from every nearby gradient
    gap = 2 * abs(right - left) * min(t, 1 - t)
    assert min(np.linalg.norm(G_peer - G) for G in limits.values()) == pytest.approx(gap)
    assert np.linalg.norm(nearby - G_peer, axis=1).min() >= 0.99 * gap
