"""An independent reference for gengrad.flow: NumPy gradients on a frozen activation pattern,
integrated piece by piece by SciPy's DOP853 at tight tolerance and restarted at every switch.

Sliding is done the textbook way, with no projection: the Filippov field
alpha F_upper + (1 - alpha) F_lower with alpha = v_lower / (v_lower - v_upper) from the normal
velocities of the two one-sided fields (forward-mode tangents), until alpha leaves [0, 1].
One sliding surface at a time; activations with one kink at 0 (relu, leaky_relu, abs).
"""
from __future__ import annotations

import numpy as np
from scipy.integrate import solve_ivp

from gengrad import reference


class Unsupported(Exception):
    """A situation this reference does not integrate (a second sliding surface, a graze)."""


def frozen_gradient(theta, net, slopes, X, Y, weight):
    """G of the network whose hidden unit (m, k, j) has the linear activation slopes[k][m, j] * z
    (a piece of an activation with its kink at 0, value 0 there, continued past the kink)."""
    params = reference.unflatten(theta, net.widths)
    hs, zs = [X], []
    for k, (W, b) in enumerate(params):
        zs.append(hs[-1] @ W.T + b)
        if k < len(params) - 1:
            hs.append(slopes[k] * zs[-1])
    delta = weight[:, None] * reference.loss_gradient(net.loss, zs[-1], Y)
    grads = []
    for k in range(len(params) - 1, -1, -1):
        grads.append(np.concatenate([(delta.T @ hs[k]).ravel(), delta.sum(axis=0)]))
        if k > 0:
            delta = slopes[k - 1] * (delta @ params[k][0])
    return np.concatenate(grads[::-1])


def hidden(theta, net, slopes, X, direction=None):
    """The hidden pre-activations [z^1, ..., z^{L-1}], or with ``direction`` their derivatives
    along it (a forward-mode pass)."""
    params = reference.unflatten(theta, net.widths)
    tangents = None if direction is None else reference.unflatten(direction, net.widths)
    h, dh, zs, dzs = X, np.zeros_like(X), [], []
    for k, (W, b) in enumerate(params[:-1]):
        zs.append(h @ W.T + b)
        if tangents is not None:
            dW, db = tangents[k]
            dzs.append(h @ dW.T + dh @ W.T + db)
            dh = slopes[k] * dzs[-1]
        h = slopes[k] * zs[-1]
    return zs if direction is None else dzs


def piecewise_flow(net, theta0, X, Y, t_end, weight=None, rtol=1e-13, atol=1e-15):
    """(theta(t_end), events) with events a list of (t, kind, (layer, sample, neuron)), kind
    "crossing", "sliding-start" or "sliding-end", layer 1-based."""
    act = net.activation
    assert act.piecewise_linear and act.kinks == (0.0,), "kink at 0 only"
    left, right = act.slopes
    weight = np.full(len(X), 1.0 / len(X)) if weight is None else weight
    theta = np.array(theta0, dtype=np.float64)
    upper = [z > 0 for z in reference.pre_activations(theta, net.widths, act, X)[:-1]]
    sliding = None        # (k, m, j), k 0-based
    t, events = 0.0, []

    def slopes_of(upper):
        return [np.where(u, right, left) for u in upper]

    def one_sided(y, unit, side):
        k, m, j = unit
        pattern = [u.copy() for u in upper]
        pattern[k][m, j] = side
        slopes = slopes_of(pattern)
        F = -frozen_gradient(y, net, slopes, X, Y, weight)
        return F, hidden(y, net, slopes, X, F)[k][m, j]

    def filippov(y):
        F_lower, v_lower = one_sided(y, sliding, False)
        F_upper, v_upper = one_sided(y, sliding, True)
        alpha = v_lower / (v_lower - v_upper)
        return alpha * F_upper + (1 - alpha) * F_lower, alpha

    while t < t_end:
        slopes = slopes_of(upper)

        def field(_, y):
            return filippov(y)[0] if sliding else -frozen_gradient(y, net, slopes, X, Y, weight)

        def gap(_, y):
            zs = hidden(y, net, slopes, X)
            gaps = [np.where(u, z, -z) for u, z in zip(upper, zs)]
            if sliding:
                gaps[sliding[0]][sliding[1:]] = np.inf
            return min(np.min(g) for g in gaps)

        def margin(_, y):
            alpha = filippov(y)[1]
            return min(alpha, 1 - alpha)
        gap.terminal, gap.direction = True, -1
        margin.terminal, margin.direction = True, -1
        events_fns = [gap, margin] if sliding else [gap]
        sol = solve_ivp(field, (t, t_end), theta, method="DOP853", rtol=rtol, atol=atol,
                        events=events_fns)
        theta, t = sol.y[:, -1], sol.t[-1]
        if sol.status != 1:
            break
        which = 0 if len(sol.t_events[0]) else 1
        theta = sol.y_events[which][0]
        if which == 1:                     # alpha left [0, 1]: the unit takes that side
            alpha = filippov(theta)[1]
            k, m, j = sliding
            upper[k][m, j] = alpha > 0.5
            events.append((t, "sliding-end", (k + 1, m, j)))
            sliding = None
            continue
        zs = hidden(theta, net, slopes, X)
        candidates = [(abs(z.flat[i]), k, i) for k, z in enumerate(zs)
                      for i in np.argsort(np.abs(z), axis=None)[:2]
                      if not (sliding and (k, *np.unravel_index(i, z.shape)) == sliding)]
        _, k, flat = min(candidates)
        m, j = np.unravel_index(flat, zs[k].shape)
        unit, going_up = (k, m, j), not upper[k][m, j]
        _, v_new = one_sided(theta, unit, going_up)
        _, v_old = one_sided(theta, unit, not going_up)
        sign = 1 if going_up else -1
        if sign * v_new > 0:
            upper[k][m, j] = going_up
            events.append((t, "crossing", (k + 1, m, j)))
        elif sign * v_old > 0 and sliding is None:
            sliding = unit
            events.append((t, "sliding-start", (k + 1, m, j)))
        else:
            raise Unsupported(f"unit {(k + 1, m, j)} at t = {t}: graze or second sliding surface")
    return theta, events
