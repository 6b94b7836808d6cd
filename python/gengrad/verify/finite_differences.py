"""R3: where no pre-activation hits a kink, G against central finite differences (docs/math.md §5)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np
from numpy.typing import ArrayLike

from ..network import Network
from .common import checked_problem, kink_hits, kink_margin, kink_offsets, kink_sides, verdict_text
from .problems import rounding_scales

# --- R3: finite differences where the risk is C¹ ------------------------------------------------

@dataclass(frozen=True, eq=False)
class FiniteDifferenceCheck:
    """G against central differences (L(θ + h e_i) - L(θ - h e_i)) / 2h in float64 (R3).

    ``margin`` is the distance of the nearest hidden pre-activation to a kink (0 when θ hits
    one: then L need not be differentiable at θ and the check does not apply). Coordinates
    whose step ±h moves a pre-activation across a kink (``crossing``) compare two pieces of L,
    so a disagreement there says the step is too large for the margin, not that G is wrong.
    ``max_relative_error`` is max_i abs(FD_i - G_i) / max_i abs(G_i) over the other coordinates.
    """

    h: float
    checked: int
    dim: int
    max_relative_error: float
    margin: float
    kink_hits: int
    crossing: int
    applicable: bool
    passed: bool
    reason: str

    def __str__(self) -> str:
        verdict = verdict_text(self.passed) if self.applicable else "not applicable"
        return f"R3 finite differences: {verdict}. {self.reason}"


def finite_difference_check(net: Network, theta: ArrayLike, X: ArrayLike, Y: ArrayLike, h: float = 1e-6,
                            rtol: float = 1e-6, sample_weight: Optional[ArrayLike] = None, max_coordinates: int = 2000,
                            seed: int = 0) -> FiniteDifferenceCheck:
    """G(θ) against central finite differences of the float64 risk (docs/math.md §5, R3).

    Checks every coordinate, or a random ``max_coordinates`` of them (seeded) when d is larger.
    Coordinate i agrees when abs(FD_i - G_i) <= rtol max abs(G) + the rounding of the difference
    quotient, 100 eps S / h, where S bounds the terms the risk is computed from (the risk and
    Σ w_m s_m (1 + s_m + abs(y_m)), s_m the size of what z^L_m is summed from (rounding_scales):
    the cross-entropy of a confident output is a difference of two numbers of size abs(z^L), and
    an output can cancel to 0).
    """
    theta, X, Y, weight = checked_problem(net, theta, X, Y, sample_weight, np.float64)
    if not (isinstance(h, (int, float)) and math.isfinite(h) and h > 0):
        raise ValueError(f"h must be a positive finite number, got {h!r}")
    if isinstance(max_coordinates, bool) or not isinstance(max_coordinates, int) \
            or max_coordinates < 1:
        raise ValueError(f"max_coordinates must be a positive integer, got {max_coordinates!r}")
    offsets = kink_offsets(net, theta, X)
    margin, hits = kink_margin(offsets), kink_hits(offsets)
    if hits:
        return FiniteDifferenceCheck(
            h, 0, net.dim, math.nan, margin, hits, 0, False, True,
            f"θ puts {hits} pre-activation(s) exactly on a kink, where L need not be "
            "differentiable (R3 is about open sets where L is C¹); the subgradient certificate "
            "is the check at such θ")

    risk, G = net.risk_and_gradient(theta, X, Y, weight)
    if net.dim > max_coordinates:
        coords = np.sort(np.random.default_rng(seed).choice(net.dim, max_coordinates,
                                                            replace=False))
    else:
        coords = np.arange(net.dim)
    step = np.zeros_like(theta)
    fd = np.empty(len(coords))
    for n, i in enumerate(coords):
        # theta_i +- h round to steps up != down; the central quotient would then keep
        # L'' (up - down) / 2, which hypothesis found above G = 0 where L is flat to first order
        # (4e-16 at theta_i = -1). The three-point quotient on the steps taken is exact for
        # quadratics, and the central one when up == down.
        step[i] = up = (theta[i] + h) - theta[i]
        forward = net.risk(theta + step, X, Y, weight)
        step[i] = -(down := theta[i] - (theta[i] - h))
        backward = net.risk(theta + step, X, Y, weight)
        fd[n] = (down**2 * (forward - risk) + up**2 * (risk - backward)) / (up * down * (up + down))
        step[i] = 0.0
    scale = max(float(np.abs(G).max()), np.finfo(np.float64).tiny)
    difference = np.abs(fd - G[coords])
    targets = np.eye(net.widths[-1])[Y] if Y.dtype.kind in "iu" else Y.reshape(len(X), -1)
    # the size of what the outputs are summed from, not |z^L|, which can cancel to 0
    output = rounding_scales(theta, net.widths, net.activation, X, targets, net.loss,
                             weight)[0][-1].max(axis=1)
    target = np.abs(targets).max(axis=1)
    mass = np.full(len(X), 1.0 / len(X)) if weight is None else weight
    terms = abs(risk) + float(np.sum(mass * output * (1 + output + target)))
    resolution = 100 * np.finfo(np.float64).eps * terms / h
    tolerance = rtol * scale + resolution

    sides = kink_sides(offsets)
    crossing = []
    for far in np.flatnonzero(difference > tolerance):
        step[coords[far]] = h
        for moved in (theta + step, theta - step):
            if any(not np.array_equal(a, b)
                   for a, b in zip(kink_sides(kink_offsets(net, moved, X)), sides)):
                crossing.append(far)
                break
        step[coords[far]] = 0.0
    valid = np.ones(len(coords), bool)
    valid[crossing] = False
    max_error = float(difference[valid].max() / scale) if valid.any() else math.nan
    wrong = np.flatnonzero(valid & (difference > tolerance))

    subset = "" if len(coords) == net.dim else f" (a random {len(coords)} of d = {net.dim})"
    reason = (f"max |FD - G| / max|G| = {max_error:.2g} over {int(valid.sum())} coordinates"
              f"{subset}, h = {h:g}, margin {margin:.3g}")
    if resolution >= scale:
        reason += (f"; but the difference quotients' rounding ({resolution:.2g}) exceeds "
                   f"max|G| = {scale:.2g}: they cannot tell G from 0 here")
    if crossing:
        reason += (f"; {len(crossing)} coordinate(s) not compared: their step crosses a kink "
                   f"(margin {margin:.3g} too small for h = {h:g}; not a failure of G)")
    if len(wrong):
        first = coords[wrong[0]]
        reason = (f"{len(wrong)} coordinate(s) disagree, e.g. i = {first}: G = {G[first]:.10g}, "
                  f"FD = {fd[wrong[0]]:.10g}; " + reason)
    return FiniteDifferenceCheck(h, int(valid.sum()), net.dim, max_error, margin, 0,
                                 len(crossing), True, not len(wrong), reason)
