"""Kink statistics: exact hits per layer, what the convention changes, float32 against float64
(docs/math.md §6)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
from numpy.typing import ArrayLike

from ..network import Network
from .common import checked_problem, format_number, sibling_network, verdict_text

# --- kink statistics ----------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class KinkStatistics:
    """Exact kink hits per hidden layer in float32 and float64 (θ, X, Y rounded to float32 for
    the first), ||G_left - G_right|| between the all-left and all-right conventions in each
    (it must be 0 when nothing hits a kink), and ||G32 - G64|| / ||G64||."""

    counts32: tuple[int, ...]
    counts64: tuple[int, ...]
    convention_gap32: float
    convention_gap64: float
    float32_vs_float64: float
    passed: bool
    reason: str

    def __str__(self) -> str:
        return (f"kink statistics: {verdict_text(self.passed)}. {self.reason}\n"
                f"  exact hits per hidden layer: float64 {list(self.counts64)}, "
                f"float32 {list(self.counts32)}\n"
                f"  ||G_left - G_right||: float64 {format_number(self.convention_gap64)}, float32 "
                f"{format_number(self.convention_gap32)}; ||G32 - G64|| / ||G64|| = "
                f"{self.float32_vs_float64:.3g}")


def kink_statistics(net: Network, theta: ArrayLike, X: ArrayLike, Y: ArrayLike,
                    sample_weight: Optional[ArrayLike] = None) -> KinkStatistics:
    """Kink hits per layer, what the one-sided convention changes, float32 against float64.

    Passes when the conventions give identical G wherever nothing hits a kink (in both
    precisions); the counts and the float32 difference are reported, not judged.
    """
    counts: dict[type[np.floating[Any]], tuple[int, ...]] = {}
    gaps: dict[type[np.floating[Any]], float] = {}
    grads: dict[type[np.floating[Any]], np.ndarray] = {}
    for dtype in (np.float32, np.float64):
        t, x, y, w = checked_problem(net, theta, X, Y, sample_weight, dtype)
        # the reference backend computes in float64 only
        base = net if dtype == np.float64 else sibling_network(net, backend="cpp")
        counts[dtype] = tuple(int(c) for c in base.kink_counts(t, x))
        grads[dtype] = base.gradient(t, x, y, w)
        if net.activation.kinks:
            left = sibling_network(base, "left").gradient(t, x, y, w)
            right = sibling_network(base, "right").gradient(t, x, y, w)
            gaps[dtype] = float(np.linalg.norm(left.astype(np.float64) - right))
        else:
            gaps[dtype] = 0.0
    G64 = grads[np.float64]
    relative = float(np.linalg.norm(grads[np.float32] - G64)
                     / max(np.linalg.norm(G64), np.finfo(np.float64).tiny))
    broken = [dtype.__name__ for dtype in counts if not sum(counts[dtype]) and gaps[dtype]]
    if broken:
        passed, reason = False, (f"no kink is hit in {', '.join(broken)}, yet the left and "
                                 "right conventions give different G")
    else:
        passed = True
        hit64, hit32 = sum(counts[np.float64]), sum(counts[np.float32])
        reason = (f"{hit64} exact kink hit(s) in float64, {hit32} in float32; the one-sided "
                  f"convention changes G by {format_number(gaps[np.float64])} (float64)")
        if not hit64:
            reason += " (0, as it must without hits)"
    return KinkStatistics(counts[np.float32], counts[np.float64], gaps[np.float32],
                          gaps[np.float64], relative, passed, reason)
