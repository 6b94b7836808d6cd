"""Independent oracles for gengrad.flow on random problems (NumPy only: gengrad.reference and
tests/flow_reference.py, nothing of the compiled core).

- ``replay``: the event list, replayed from ``initial_pieces``, must describe the trajectory.
  At every saved state and at points of the dense output between them, each hidden unit must lie
  in its replayed piece, or on its kink while it slides; and at every event the one-sided normal
  velocities dz/dt = grad z . F (forward-mode NumPy passes on the frozen pattern) must say what
  the event says: a crossing unit moves into its new piece (or is tangent to the surface), a
  sliding unit is pushed into its surface from both sides.
- ``euler_limit``: the h -> 0 limit of explicit Euler, theta <- theta - h G(theta) with the
  NumPy reference G, Richardson-extrapolated from h, h/2, h/4. Euler follows the Filippov
  solution through crossings and sliding (it chatters across a sliding surface with amplitude
  O(h)), so its limit is the flow, independently of any event logic.
- ``random_problem``: 1 to 3 hidden layers, 1- to 3-D inputs, squared error or cross-entropy,
  relu, leaky_relu, abs or hardtanh, continuous data or small integers (starts exactly on kinks).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import gengrad
from flow_reference import Pattern, filippov, frozen_gradient, hidden, sliding_velocities
from gengrad import activations, reference

ACTIVATIONS = {"relu": "relu", "leaky_relu": activations.leaky_relu(0.2), "abs": "abs",
               "hardtanh": activations.hardtanh(-0.5, 0.75)}


@dataclass
class Problem:
    name: str
    net: gengrad.Network
    theta0: np.ndarray
    X: np.ndarray
    Y: np.ndarray
    t_end: float


def random_problem(seed: int, max_samples: int = 256, integer: bool = None) -> Problem:
    rng = np.random.default_rng(seed)
    hidden_layers = int(rng.integers(1, 4))
    l0 = int(rng.integers(1, 4))
    loss = "cross_entropy" if rng.random() < 0.3 else "squared_error"
    out = int(rng.integers(2, 4)) if loss == "cross_entropy" else 1
    widths = (l0, *(int(w) for w in rng.integers(2, 9, hidden_layers)), out)
    M = int(rng.choice([m for m in (4, 8, 16, 32, 64, 128, 256) if m <= max_samples]))
    name = str(rng.choice(list(ACTIVATIONS)))
    net = gengrad.Network(widths, ACTIVATIONS[name], loss=loss)
    if integer is None:
        integer = rng.random() < 0.25
    if integer:  # pre-activations start exactly on kinks (0 for relu, abs, leaky_relu)
        theta0 = rng.integers(-2, 3, net.dim).astype(float)
        X = rng.integers(-2, 3, (M, l0)).astype(float)
        Y = rng.integers(0, out, M) if loss == "cross_entropy" else rng.integers(-2, 3, (M, 1)).astype(float)
    else:
        theta0 = net.init(seed=seed, scheme="torch")
        X = rng.normal(size=(M, l0))
        Y = rng.integers(0, out, M) if loss == "cross_entropy" else rng.normal(size=(M, 1))
    if loss == "cross_entropy":
        Y = np.eye(out)[Y]
    t_end = float(rng.choice([1.0, 2.0, 4.0]))
    kind = "integer" if integer else "random"
    return Problem(f"seed {seed}: {widths} {name} {loss} M={M} {kind}", net, theta0, X, Y, t_end)


class Replayed(Pattern):
    """The pattern of the replayed events (flow_reference.Pattern: pieces per hidden layer, and
    the sliding units with their alphas)."""

    def __init__(self, net: gengrad.Network, initial_pieces: np.ndarray):
        cuts = np.cumsum(net.widths[1:-1])[:-1]
        pieces = [p.astype(np.int64) for p in np.split(initial_pieces, cuts, axis=1)]
        super().__init__(net.activation, [np.zeros(p.shape) for p in pieces])
        for p in pieces:  # sliding from the start: set by their sliding-start events at t = 0
            p[p < 0] = 0
        self.pieces = pieces
        self.alphas = np.zeros(0)

    def apply(self, event: gengrad.gradient_flow.Event) -> None:
        k, m, j = event.layer - 1, event.sample, event.neuron
        if event.kind == "sliding-start":
            self.pieces[k][m, j] = event.kink
            self.sliding.append((k, m, j, event.kink))
            self.alphas = np.append(self.alphas, 0.5)
        else:
            if event.kind == "sliding-end":
                s = self.sliding.index((k, m, j, event.kink))
                del self.sliding[s]
                self.alphas = np.delete(self.alphas, s)
            self.pieces[k][m, j] = event.to_piece

    def violations(self, zs: list[np.ndarray], tol: float) -> list[str]:
        """Units not in their replayed piece (or off their kink while sliding) by more than tol."""
        bounds = np.concatenate([[-np.inf], self.kinks, [np.inf]])
        sliding = [np.zeros(p.shape, bool) for p in self.pieces]
        for k, m, j, _ in self.sliding:
            sliding[k][m, j] = True
        found = []
        for k, (z, p) in enumerate(zip(zs, self.pieces)):
            scale = tol * (1 + np.abs(z))
            out = ~sliding[k] & ((z < bounds[p] - scale) | (z > bounds[p + 1] + scale))
            off = sliding[k] & (np.abs(z - self.kinks[np.minimum(p, len(self.kinks) - 1)]) > scale)
            for m, j in zip(*np.nonzero(out | off)):
                state = "sliding" if sliding[k][m, j] else f"piece {p[m, j]}"
                found.append(f"unit (layer {k + 1}, sample {m}, neuron {j}): z = {z[m, j]:.3e}, replayed {state}")
        return found


def replay(problem: Problem, result, rtol: float = 1e-8, dense_points: int = 4) -> list[str]:
    """What is wrong with ``result`` (run with dense_output=True, at this rtol) by the replay
    oracle. Pre-activations may be off their side or surface by the integration's accuracy, and
    sliding weights out of [0, 1] by the integrator's widest hysteresis band (100 times its
    band, cpp/flow/integrator.hpp)."""
    tol = max(1e-7, 100 * rtol)
    band = 100 * min(1e-4, max(1e-6, 100 * rtol))
    net, X = problem.net, problem.X
    state = Replayed(net, result.initial_pieces)
    weight = np.full(len(X), 1.0 / len(X))
    events = list(result.events)
    problems, e = [], 0
    times = result.t
    for i, t in enumerate(times):
        # the dense output between the previous saved state and this one, on the pattern so far
        if i > 0 and result.sol is not None and t > times[i - 1]:
            for tau in np.linspace(times[i - 1], t, dense_points + 2)[1:-1]:
                zs = reference.pre_activations(result.sol(tau), net.widths, net.activation, X)[:-1]
                problems += [f"t = {tau:.6g} (dense): {v}" for v in state.violations(zs, tol)]
        checked = []
        while e < len(events) and events[e].t <= t:
            state.apply(events[e])
            checked.append(events[e])
            e += 1
        if checked and t > 0:
            problems += [f"t = {t:.6g}: {v}" for v in filippov_violations(problem, state, result.theta[i], checked,
                                                                            weight, band, rtol)]
        zs = reference.pre_activations(result.theta[i], net.widths, net.activation, X)[:-1]
        problems += [f"t = {t:.6g}: {v}" for v in state.violations(zs, tol)]
        if len(problems) > 20:
            break
    return problems


def filippov_weights(problem: Problem, state: Replayed, theta: np.ndarray, weight: np.ndarray, band: float,
                     rtol: float):
    """(alphas in [0, 1] for which the textbook Filippov field with the replayed sliding set is
    tangent to every sliding surface, that field), or (None, None) if there are none. The
    multilinear system may have several solutions (surfaces coupled across layers), so Newton's
    answer from the centre is checked, and a bounded least-squares search is the fallback."""
    from scipy.optimize import least_squares

    net, X, Y = problem.net, problem.X, problem.Y

    def field(alphas):
        maps = state.maps(alphas)
        F = -frozen_gradient(theta, net, maps, X, Y, weight)
        return F, sliding_velocities(theta, net, X, state, F, maps)

    state.alphas = np.full(len(state.sliding), 0.5)
    _, alphas = filippov(theta, net, X, Y, weight, state)
    F, v = field(alphas)
    # The integrator keeps a surface whose side moves the unit off it by less than the local
    # error within a step: normal velocities count as zero to about 1e3 rtol.
    scale = (1e-9 + 1e3 * rtol) * (1 + np.linalg.norm(F))
    if np.max(np.abs(v)) <= scale and np.all((alphas >= -band) & (alphas <= 1 + band)):
        return alphas, F
    for start in [np.full(len(alphas), 0.5), *np.random.default_rng(0).uniform(0, 1, (4, len(alphas)))]:
        fit = least_squares(lambda a: field(a)[1], start, bounds=(-band, 1 + band), xtol=1e-15, ftol=1e-15,
                            gtol=1e-15)
        F, v = field(fit.x)
        if np.max(np.abs(v)) <= (1e-9 + 1e3 * rtol) * (1 + np.linalg.norm(F)):
            return fit.x, F
    return None, None


def filippov_violations(problem: Problem, state: Replayed, theta: np.ndarray, events, weight, band: float,
                        rtol: float) -> list[str]:
    """At an event's state, with the textbook Filippov field of the replayed sliding set: there
    are weights alpha in [-band, 1 + band] that make it tangent to every sliding surface, and
    every crossing unit moves into its new piece (or along the surface)."""
    net, X, Y = problem.net, problem.X, problem.Y
    if state.sliding:
        alphas, F = filippov_weights(problem, state, theta, weight, band, rtol)
        if alphas is None:
            return [f"no Filippov weights in [0, 1] for the sliding set {state.sliding}"]
    else:
        alphas, F = np.zeros(0), -frozen_gradient(theta, net, state.maps(), X, Y, weight)
    v = hidden(theta, net, state.maps(alphas), X, F)
    found = []
    for event in events:
        if event.kind != "crossing":
            continue
        into = v[event.layer - 1][event.sample, event.neuron] * (1 if event.to_piece > event.from_piece else -1)
        scale = 1e-6 * (1 + np.linalg.norm(F)) * (1 + np.linalg.norm(X[event.sample]))
        if into < -scale:
            found.append(f"the crossing {event} moves back out ({into:.3e})")
    return found


def euler(problem: Problem, n: int) -> np.ndarray:
    net = problem.net
    theta = problem.theta0.copy()
    h = problem.t_end / n
    for _ in range(n):
        theta -= h * reference.generalized_gradient(theta, net.widths, net.activation, problem.X, problem.Y,
                                                    loss=net.loss)
    return theta


def euler_limit(problem: Problem, n: int) -> tuple[np.ndarray, float]:
    """(Richardson extrapolation of Euler with n, 2n and 4n steps, an estimate of its error)."""
    a, b, c = (euler(problem, n * f) for f in (1, 2, 4))
    coarse, fine = 2 * b - a, 2 * c - b
    return fine, float(np.max(np.abs(fine - coarse)))
