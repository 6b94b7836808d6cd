"""An independent reference for gengrad.flow: NumPy gradients on a frozen activation pattern,
integrated piece by piece by SciPy's DOP853 at tight tolerance and restarted at every switch.

Sliding is done the textbook way, with no projection: while surfaces s = 1..S slide, unit s
takes the mixed slope alpha_s slope(upper) + (1 - alpha_s) slope(lower) through its kink, and
the alphas are solved (Newton) so that the normal velocities dz_s/dt (forward-mode tangents)
vanish: for one surface, alpha F_upper + (1 - alpha) F_lower with
alpha = v_lower / (v_lower - v_upper); for several, the multilinear Filippov field. Sliding on
a surface ends where its alpha leaves [0, 1], or at a crossing elsewhere that moves it out.
Any piecewise-linear activation; no unit may start exactly at a kink; a graze or a corner of
two surfaces raises Unsupported.
"""
from __future__ import annotations

import numpy as np
from scipy.integrate import solve_ivp

from gengrad import reference

#: alpha may leave [0, 1] by this much before sliding ends (the core's slack): a surface
#: entered with alpha exactly 0 or 1 (a one-sided field tangent to it) keeps sliding.
SLACK = 1e-10


class Unsupported(Exception):
    """A situation this reference does not integrate (a graze, a corner of two surfaces)."""


class Pattern:
    """Per hidden unit (k, m, j): the linear piece it is on, or the kink it slides on."""

    def __init__(self, act, zs):
        self.kinks = np.array(act.kinks)
        self.slopes = np.array(act.slopes)
        values = [act.value_at_first_kink]
        for i in range(1, len(act.kinks)):
            values.append(values[-1] + act.slopes[i] * (act.kinks[i] - act.kinks[i - 1]))
        self.values = np.array(values)
        self.pieces = [np.searchsorted(self.kinks, z) for z in zs]
        self.sliding = []          # [(k, m, j, kink)]
        self.alphas = np.zeros(0)

    def maps(self, alphas=None):
        """(slope, intercept) arrays per hidden layer, with the sliding units' mixed slopes."""
        alphas = self.alphas if alphas is None else alphas
        slope, intercept = [], []
        for p in self.pieces:
            anchor = np.maximum(p - 1, 0)
            slope.append(self.slopes[p])
            intercept.append(self.values[anchor] - self.slopes[p] * self.kinks[anchor])
        for (k, m, j, i), a in zip(self.sliding, alphas):
            slope[k][m, j] = (1 - a) * self.slopes[i] + a * self.slopes[i + 1]
            intercept[k][m, j] = self.values[i] - slope[k][m, j] * self.kinks[i]
        return slope, intercept


def frozen_gradient(theta, net, maps, X, Y, weight):
    """G of the network whose hidden units have the affine activations ``maps``."""
    slope, intercept = maps
    params = reference.unflatten(theta, net.widths)
    hs, zs = [X], []
    for k, (W, b) in enumerate(params):
        zs.append(hs[-1] @ W.T + b)
        if k < len(params) - 1:
            hs.append(slope[k] * zs[-1] + intercept[k])
    delta = weight[:, None] * reference.loss_gradient(net.loss, zs[-1], Y)
    grads = []
    for k in range(len(params) - 1, -1, -1):
        grads.append(np.concatenate([(delta.T @ hs[k]).ravel(), delta.sum(axis=0)]))
        if k > 0:
            delta = slope[k - 1] * (delta @ params[k][0])
    return np.concatenate(grads[::-1])


def hidden(theta, net, maps, X, direction=None):
    """The hidden pre-activations [z^1, ..., z^{L-1}], or with ``direction`` their derivatives
    along it (a forward-mode pass)."""
    slope, intercept = maps
    params = reference.unflatten(theta, net.widths)
    tangents = None if direction is None else reference.unflatten(direction, net.widths)
    h, dh, zs, dzs = X, np.zeros_like(X), [], []
    for k, (W, b) in enumerate(params[:-1]):
        zs.append(h @ W.T + b)
        if tangents is not None:
            dW, db = tangents[k]
            dzs.append(h @ dW.T + dh @ W.T + db)
            dh = slope[k] * dzs[-1]
        h = slope[k] * zs[-1] + intercept[k]
    return zs if direction is None else dzs


def sliding_velocities(y, net, X, pattern, F, maps):
    """dz/dt of every sliding unit of ``pattern`` under the field F."""
    dz = hidden(y, net, maps, X, F)
    return np.array([dz[k][m, j] for k, m, j, _ in pattern.sliding])


def filippov(y, net, X, Y, weight, pattern):
    """The Filippov field at y and the alphas of the sliding units of ``pattern`` (Newton from
    pattern.alphas; F is affine in each alpha): the field with mixed slopes whose normal
    velocities vanish."""
    alphas = pattern.alphas.copy()
    for _ in range(30):
        maps = pattern.maps(alphas)
        F = -frozen_gradient(y, net, maps, X, Y, weight)
        v = sliding_velocities(y, net, X, pattern, F, maps)
        if np.max(np.abs(v), initial=0) <= 1e-15 * (1 + np.linalg.norm(F)):
            break
        J = np.empty((len(v), len(v)))
        for s in range(len(v)):
            shifted = alphas.copy()
            shifted[s] += 1
            maps_s = pattern.maps(shifted)
            J[:, s] = sliding_velocities(y, net, X, pattern, -frozen_gradient(y, net, maps_s, X, Y, weight),
                                         maps_s) - v
        # lstsq: coincident surfaces (duplicate samples) make J singular; the field is unique
        alphas = alphas - np.linalg.lstsq(J, v, rcond=None)[0]
    return F, alphas


def piecewise_flow(net, theta0, X, Y, t_end, weight=None, rtol=1e-13, atol=1e-15):
    """(theta(t_end), events) with events a list of (t, kind, (layer, sample, neuron)), kind
    "crossing", "sliding-start" or "sliding-end", layer 1-based."""
    act = net.activation
    assert act.piecewise_linear and act.kinks
    weight = np.full(len(X), 1.0 / len(X)) if weight is None else weight
    theta = np.array(theta0, dtype=np.float64)
    pattern = Pattern(act, reference.pre_activations(theta, net.widths, act, X)[:-1])
    t, events = 0.0, []
    switched = None       # the unit switched at the last event, (k, m, j)

    def filippov_here(y):
        return filippov(y, net, X, Y, weight, pattern)

    def gaps(y):
        """Distance of every unit into its piece, from below (index 0) and above (index 1)."""
        kinks, out = pattern.kinks, []
        for p, z in zip(pattern.pieces, hidden(y, net, pattern.maps(), X)):
            lower = np.where(p > 0, z - kinks[np.maximum(p - 1, 0)], np.inf)
            upper = np.where(p < len(kinks), kinks[np.minimum(p, len(kinks) - 1)] - z, np.inf)
            out.append(np.stack([lower, upper]))
        for k, m, j, _ in pattern.sliding:
            out[k][:, m, j] = np.inf
        if switched:   # SciPy would report an event at t0 where the event function starts at 0
            k, m, j = switched
            out[k][:, m, j] += 1e-14
        return out

    def one_sided(y, k, m, j, piece):
        """The normal velocity of unit (k, m, j) with that unit on ``piece``."""
        saved = pattern.pieces[k][m, j]
        pattern.pieces[k][m, j] = piece
        F, alphas = filippov_here(y) if pattern.sliding else (
            -frozen_gradient(y, net, pattern.maps(), X, Y, weight), None)
        v = hidden(y, net, pattern.maps(alphas), X, F)[k][m, j]
        pattern.pieces[k][m, j] = saved
        return v

    while t < t_end:
        def field(_, y):
            if pattern.sliding:
                return filippov_here(y)[0]
            return -frozen_gradient(y, net, pattern.maps(), X, Y, weight)

        def gap(_, y):
            return min(np.min(g) for g in gaps(y))

        def margin(_, y):
            alphas = filippov_here(y)[1]
            return np.min(np.minimum(alphas, 1 - alphas)) + SLACK
        gap.terminal, gap.direction = True, -1
        margin.terminal, margin.direction = True, -1
        sol = solve_ivp(field, (t, t_end), theta, method="DOP853", rtol=rtol, atol=atol,
                        events=[gap, margin] if pattern.sliding else [gap], dense_output=True)
        theta, t = sol.y[:, -1], sol.t[-1]
        if sol.status != 1:
            break
        which = 0 if len(sol.t_events[0]) else 1
        theta = sol.y_events[which][0]
        switched = None
        if which == 1:                     # an alpha left [0, 1]: that unit takes that side
            alphas = filippov_here(theta)[1]
            s = int(np.argmin(np.minimum(alphas, 1 - alphas)))   # the one that left
            k, m, j, i = pattern.sliding.pop(s)
            pattern.pieces[k][m, j] = i + 1 if alphas[s] > 0.5 else i
            pattern.alphas = np.delete(alphas, s)
            events.append((t, "sliding-end", (k + 1, m, j)))
            switched = (k, m, j)
            continue
        # The unit that switched: nearest its kink among those that were away from it during
        # the segment (not one parked there).
        away = [np.max(np.stack(layer), axis=0) > 1e-12 for layer in
                zip(*(gaps(sol.sol(tau)) for tau in np.linspace(sol.t[0], t, 9)[:-1]))]
        g = [np.where(a, np.abs(gk), np.inf) for gk, a in zip(gaps(theta), away)]
        k, side, m, j = min(((k, *np.unravel_index(np.argmin(gk), gk.shape))
                             for k, gk in enumerate(g)), key=lambda c: g[c[0]][c[1:]])
        p = pattern.pieces[k][m, j]
        going_up = side == 1
        new, kink, sign = (p + 1, p, 1) if going_up else (p - 1, p - 1, -1)
        v_new, v_old = one_sided(theta, k, m, j, new), one_sided(theta, k, m, j, p)
        if sign * v_new > 0:
            pattern.pieces[k][m, j] = new
            events.append((t, "crossing", (k + 1, m, j)))
            switched = (k, m, j)
            if pattern.sliding:   # the field jumped: a sliding surface may have to end here
                pattern.alphas = filippov_here(theta)[1]
                leaving = np.minimum(pattern.alphas, 1 - pattern.alphas) + SLACK < 0
                for s in np.flatnonzero(leaving)[::-1]:
                    k, m, j, i = pattern.sliding.pop(s)
                    pattern.pieces[k][m, j] = i + 1 if pattern.alphas[s] > 0.5 else i
                    events.append((t, "sliding-end", (k + 1, m, j)))
                pattern.alphas = pattern.alphas[~leaving]
        elif sign * v_old > 0:
            v_lower, v_upper = (v_old, v_new) if going_up else (v_new, v_old)
            pattern.sliding.append((k, m, j, kink))
            pattern.alphas = np.append(pattern.alphas, v_lower / (v_lower - v_upper))
            pattern.alphas = filippov_here(theta)[1]
            if np.any(np.minimum(pattern.alphas, 1 - pattern.alphas) + SLACK < 0):
                raise Unsupported(f"unit {(k + 1, m, j)} at t = {t}: sliding set not consistent")
            events.append((t, "sliding-start", (k + 1, m, j)))
        else:
            raise Unsupported(f"unit {(k + 1, m, j)} at t = {t}: graze")
    return theta, events
