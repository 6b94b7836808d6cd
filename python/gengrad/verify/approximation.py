"""R1: the gradients of the approximant networks against G on a ladder of r (docs/math.md §5)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
from numpy.typing import ArrayLike

from .. import activations
from ..network import Network
from .common import (
    DEFAULT_R,
    checked_problem,
    format_number,
    kink_offsets,
    parse_ladder,
    rounding_tolerance,
    smallest_nonzero_distance,
    verdict_text,
)

# --- R1: the approximation procedure ------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class ApproximationStudy:
    """||∇L_r - G|| per family and r (R1).

    ``r_star`` = 1 / ``gap``, with ``gap`` the smallest nonzero distance of a hidden
    pre-activation to a kink: for r > r_star no pre-activation lies inside an approximant's
    window, so every admissible family gives G exactly. ``exact_from[family]`` is the smallest
    r of the ladder from which the family equals G (to rounding) at every larger r, or None.
    ``bitwise`` says whether "equal" was bit-for-bit. ``agreement`` is the largest distance
    between two admissible families at an r > r_star.
    """

    r_values: tuple[float, ...]
    errors: dict[str, tuple[float, ...]]
    admissible: tuple[str, ...]
    exact_from: dict[str, Optional[float]]
    gap: float
    r_star: float
    agreement: float
    bitwise: bool
    tolerance: float
    passed: bool
    reason: str

    def __str__(self) -> str:
        families = list(self.errors)
        lines = [f"R1 approximation: {verdict_text(self.passed)}. {self.reason}",
                 f"  {'r':>9} " + " ".join(f"{f + ('' if f in self.admissible else '*'):>17}"
                                            for f in families)]
        for i, r in enumerate(self.r_values):
            mark = ">" if r > self.r_star else " "
            lines.append(f"  {mark}{r:8.1e} " + " ".join(f"{format_number(self.errors[f][i]):>17}"
                                                        for f in families))
        lines.append(f"  ||∇L_r - G||; '>' marks r > r* = {self.r_star:.3g}; "
                     "* = not admissible (comparison only)")
        return "\n".join(lines)


def approximation_study(net: Network, theta: ArrayLike, X: ArrayLike, Y: ArrayLike,
                        r_values: Sequence[float] = DEFAULT_R,
                        families: Sequence[str] = tuple(activations.FAMILIES),
                        sample_weight: Optional[ArrayLike] = None) -> ApproximationStudy:
    """∇L_r(θ) of each approximant family for each r, against G(θ) (docs/math.md §3-§5, R1).

    Computed in theta's dtype. If no r of the ladder exceeds r* = 1/gap, the study adds
    r = 2 r*, so that the exactness claim is always tested. Passes when every admissible family
    equals G at every r > r* (and so the admissible families agree).
    """
    theta, X, Y, weight = checked_problem(net, theta, X, Y, sample_weight)
    ladder = parse_ladder(r_values, "r_values", descending=False)
    families = [activations.check_family(f) for f in families]
    if not families:
        raise ValueError("families must name at least one approximant family")
    # without kinks every family is the activation itself
    admissible = tuple(f for f in families
                       if activations.FAMILIES[f] or not net.activation.kinks)

    G = net.gradient(theta, X, Y, weight)
    gap = smallest_nonzero_distance(kink_offsets(net, theta, X))
    r_star = 1.0 / gap
    if ladder[-1] <= r_star and math.isfinite(2 * r_star):
        ladder.append(2 * r_star)
    tolerance = rounding_tolerance(theta.dtype, G)

    errors: dict[str, list[float]] = {f: [] for f in families}
    agreement, bitwise = 0.0, True
    for r in ladder:
        grads = {f: net.approx_gradient(theta, X, Y, r, f, weight) for f in families}
        for f in families:
            errors[f].append(float(np.linalg.norm(grads[f] - G)))
        if r > r_star:
            bitwise &= all(np.array_equal(grads[f], G) for f in admissible)
            agreement = max([agreement] + [float(np.linalg.norm(grads[a] - grads[b]))
                                           for a in admissible for b in admissible if a < b])
    exact_from: dict[str, Optional[float]] = {}
    for f in families:
        reached: Optional[float] = None
        for r, error in zip(reversed(ladder), reversed(errors[f])):
            if error > tolerance:
                break
            reached = r
        exact_from[f] = reached

    above = [i for i, r in enumerate(ladder) if r > r_star]
    failures = [f"{f} is {format_number(errors[f][i])} from G at r = {ladder[i]:.3g} > r*"
                for f in admissible for i in above if errors[f][i] > tolerance]
    if not above:
        passed, reason = False, (f"r* = {r_star:.3g} (gap {gap:.3g}) is too large to evaluate: "
                                 "exactness not tested")
    elif failures:
        passed, reason = False, "; ".join(failures[:3])
    else:
        passed = True
        how = "bit for bit" if bitwise else f"to rounding ({tolerance:.2g})"
        where = (f"every r > r* = {r_star:.3g} (gap {gap:.3g})" if math.isfinite(gap)
                 else "every r (no hidden pre-activation lies off the kinks)")
        reason = f"{', '.join(admissible)} equal G {how} at {where}"
        others = [f for f in families if f not in admissible]
        if others:
            reason += "; at r = {:.3g}: ".format(ladder[-1]) + ", ".join(
                f"{f} {format_number(errors[f][-1])} away" for f in others)
    return ApproximationStudy(tuple(ladder), {f: tuple(e) for f, e in errors.items()},
                              admissible, exact_from, gap, r_star, agreement, bitwise, tolerance,
                              passed, reason)
