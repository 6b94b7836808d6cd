"""R2: the certificate that G(θ) is a limiting Fréchet subgradient (docs/math.md §5)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence, TypedDict

import numpy as np
from numpy.typing import ArrayLike

from ..network import Network
from .common import (
    EPS_DECADES,
    K_LADDER,
    MIN_RATE,
    checked_problem,
    format_number,
    gradient_scale,
    kink_hits,
    kink_margin,
    kink_offsets,
    parse_ladder,
    rounding_tolerance,
    verdict_text,
)
from .finite_differences import FiniteDifferenceCheck, finite_difference_check

# --- R2: the limiting-subgradient certificate ---------------------------------------------------

@dataclass(frozen=True, eq=False)
class SubgradientCertificate:
    """The witness θ_ε = θ + ε v of docs/math.md §5 and what it shows (R2).

    v moves every kink-hitting pre-activation to the side of its convention: for neuron j of
    hidden layer k it changes (W_k[j], b_k[j]) by K^k u with u·(h, 1) = ±1 on every sample that
    hits a kink. When all the neuron's hits want the same side u shifts the bias (docs/math.md §5);
    when hits at two kinks want opposite sides (hardtanh saturated at both ends) u rescales the
    neuron about the midpoint of the kinks. At every ε of the ladder θ_ε hits no kink and
    every pre-activation keeps its side (so the risk is C¹ near θ_ε with the derivative pattern
    of G(θ)); ``errors`` = ||∇L(θ_ε) - G(θ)||, ``steps`` = ||θ_ε - θ||, ``rate`` the slope of
    log errors against log ε (1 for O(ε)). ``finite_differences`` confirms ∇L(θ_ε) at the
    largest ε. ``G`` is the certified vector; θ_ε = θ + ε ``direction``.
    """

    G: np.ndarray
    direction: np.ndarray
    witness: str
    K: float
    eps: tuple[float, ...]
    steps: tuple[float, ...]
    errors: tuple[float, ...]
    rate: float
    kink_hits: int
    neurons_shifted: int
    neurons_rescaled: int
    finite_differences: Optional[FiniteDifferenceCheck]
    passed: bool
    reason: str

    def __str__(self) -> str:
        lines = [f"R2 limiting-subgradient certificate: {verdict_text(self.passed)}. {self.reason}"]
        if self.eps:
            lines.append(f"  witness {self.witness}, K = {self.K:g}: {self.neurons_shifted} "
                         f"bias shift(s), {self.neurons_rescaled} rescaling(s) for "
                         f"{self.kink_hits} kink hit(s)")
            lines.append(f"  {'eps':>9} {'||θ_ε - θ||':>13} {'||∇L(θ_ε) - G(θ)||':>20}")
            lines += [f"  {e:9.1e} {s:13.3g} {format_number(err):>20}"
                      for e, s, err in zip(self.eps, self.steps, self.errors)]
        if self.finite_differences is not None and self.eps:
            lines.append("  at θ_ε, largest ε: " + str(self.finite_differences))
        return "\n".join(lines)


class _Witness(TypedDict, total=False):
    """What a certificate found besides its verdict; what is missing keeps its default."""

    direction: np.ndarray
    K: float
    eps: tuple[float, ...]
    steps: tuple[float, ...]
    errors: tuple[float, ...]
    rate: float
    neurons_shifted: int
    neurons_rescaled: int
    finite_differences: Optional[FiniteDifferenceCheck]


def _witness_directions(net: Network, theta: np.ndarray, offsets: Sequence[np.ndarray], witness: str
                        ) -> tuple[Optional[list[tuple[np.ndarray, np.ndarray]]], int, int, Optional[str]]:
    """Per hidden layer (dW, db) of unit size, and the neuron counts; or a reason it fails."""
    act = net.activation
    want = np.where(act.right_sided, 1.0, -1.0)           # + : above the kink, - : below it
    kinks = np.asarray(act.kinks)
    directions: list[tuple[np.ndarray, np.ndarray]] = []
    shifted, rescaled = 0, 0
    for k, ((W, b), off) in enumerate(zip(net.layers(theta), offsets), start=1):
        dW, db = np.zeros_like(W), np.zeros_like(b)
        for j in np.flatnonzero((off == 0).any(axis=(0, 2))):
            hit = (off[:, j, :] == 0).any(axis=0)          # the kinks this neuron hits
            signs = set(want[hit])
            if len(signs) == 1:
                db[j] = signs.pop()
                shifted += 1
                continue
            lo, hi = kinks[hit]        # mixed sides need two kinks; activations have <= 2
            if witness == "bias":
                return None, 0, 0, (
                    f"neuron {j} of layer {k} hits the kinks at {lo:g} and {hi:g} on different "
                    "samples, and their conventions want z on opposite sides: no bias shift "
                    "moves both; witness='affine' rescales the neuron")
            # z -> z + c (z - mid): c > 0 pushes both hits away from the midpoint (lo wants
            # below, hi above), c < 0 pulls both towards it.
            sign = -want[hit][0]
            mid, half = (lo + hi) / 2, (hi - lo) / 2
            dW[j], db[j] = sign * W[j] / half, sign * (b[j] - mid) / half
            rescaled += 1
        directions.append((dW, db))
    return directions, shifted, rescaled, None


def _witness_vector(net: Network, directions: Sequence[tuple[np.ndarray, np.ndarray]], K: float) -> np.ndarray:
    v = np.zeros(net.dim)
    for k, ((dW, db), (Wv, bv)) in enumerate(zip(directions, net.layers(v)), start=1):
        Wv[...], bv[...] = K ** k * dW, K ** k * db
    return v


def _pattern_problem(net: Network, theta_eps: np.ndarray, X: np.ndarray, offsets: Sequence[np.ndarray], K: float,
                     eps: float) -> Optional[tuple[str, str]]:
    """Why θ_ε is not a valid witness point, as (kind, words); None if it is.

    Valid: no kink hit, every former hit strictly on its convention's side, every other
    pre-activation on its old side of every kink.
    """
    want = np.where(net.activation.right_sided, 1.0, -1.0)
    for k, (old, new) in enumerate(zip(offsets, kink_offsets(net, theta_eps, X)), start=1):
        hit = old == 0
        expected = np.where(hit, want, np.sign(old))
        bad = np.argwhere(np.sign(new) != expected)
        if not len(bad):
            continue
        m, j, i = bad[0]
        kappa = net.activation.kinks[i]
        where = f"at ε = {eps:.3g}, sample {m}, neuron {j} of layer {k}"
        if new[m, j, i] == 0:
            return "rounding", (f"{where} still sits on the kink {kappa:g}: the shift "
                                f"ε K^{k} = {eps * K ** k:.3g} is lost to rounding (ε too small)")
        if hit[m, j, i]:
            return "K", (f"{where} hit the kink {kappa:g} and moved to the wrong side: the "
                         f"shifts of earlier layers outweigh its own (K = {K:g} too small)")
        return "eps", (f"{where} crossed the kink {kappa:g} (distance {abs(old[m, j, i]):.3g} "
                       "at θ): ε is too large for the margin")
    return None


def subgradient_certificate(net: Network, theta: ArrayLike, X: ArrayLike, Y: ArrayLike,
                            eps_values: Optional[Sequence[float]] = None, K: Optional[float] = None,
                            witness: str = "affine", sample_weight: Optional[ArrayLike] = None
                            ) -> SubgradientCertificate:
    """Certify G(θ) ∈ ∂L(θ), the limiting Fréchet subdifferential (docs/math.md §5, R2).

    Computed in float64 (a float32 theta is converted exactly). ``witness`` is "affine" (bias
    shifts, and a rescaling for a neuron whose hits at two kinks want opposite sides) or "bias"
    (bias shifts only, as docs/math.md §5; fails on such a neuron). K defaults to the first of
    10, 100, 1000, 10000 that puts every hit on its convention's side; ``eps_values`` default
    to five decades below the largest ε at which no other pre-activation crosses a kink.
    Passes when θ_ε is a valid witness point at every ε, ||∇L(θ_ε) - G(θ)|| falls like ε
    (fitted slope >= 0.9, or within rounding of 0) and finite differences confirm ∇L(θ_ε).
    If θ hits no kink, L is C¹ near θ and the certificate is the finite-difference check at θ.
    """
    if witness not in ("affine", "bias"):
        raise ValueError(f"witness must be 'affine' or 'bias', got {witness!r}")
    if K is not None and not (isinstance(K, (int, float)) and math.isfinite(K) and K > 1):
        raise ValueError(f"K must be a finite number > 1, got {K!r}")
    if eps_values is not None:
        eps_values = parse_ladder(eps_values, "eps_values", descending=True)
    theta, X, Y, weight = checked_problem(net, theta, X, Y, sample_weight, np.float64)
    G = net.gradient(theta, X, Y, weight)
    offsets = kink_offsets(net, theta, X)
    hits = kink_hits(offsets)

    def result(passed: bool, reason: str, found: Optional[_Witness] = None) -> SubgradientCertificate:
        found = found or _Witness()
        return SubgradientCertificate(
            G=G, direction=found.get("direction", np.zeros_like(theta)), witness=witness,
            K=found.get("K", math.nan), eps=found.get("eps", ()), steps=found.get("steps", ()),
            errors=found.get("errors", ()), rate=found.get("rate", math.nan), kink_hits=hits,
            neurons_shifted=found.get("neurons_shifted", 0),
            neurons_rescaled=found.get("neurons_rescaled", 0),
            finite_differences=found.get("finite_differences"), passed=passed, reason=reason)

    if not hits:
        fd = finite_difference_check(net, theta, X, Y, sample_weight=weight)
        return result(fd.passed, "θ hits no kink, so L is C¹ near θ and G(θ) = ∇L(θ) is its "
                      "only limiting subgradient (R3); finite differences: " + fd.reason,
                      _Witness(finite_differences=fd))

    directions, shifted, rescaled, problem = _witness_directions(net, theta, offsets, witness)
    if problem:
        return result(False, "cannot certify: " + problem)
    assert directions is not None   # _witness_directions gives directions or a problem
    depth = len(offsets)
    free = [np.abs(o[o != 0]) for o in offsets]
    margin = min([float(f.min()) for f in free if f.size] + [1.0])
    for K_try in (K_LADDER if K is None else (float(K),)):
        v = _witness_vector(net, directions, K_try)
        if eps_values is None:
            top = 0.1 * margin / K_try ** depth
            for _ in range(8):
                trouble = _pattern_problem(net, theta + top * v, X, offsets, K_try, top)
                if not trouble or trouble[0] != "eps":
                    break
                top /= 10
            ladder = [top * 10.0 ** -i for i in range(EPS_DECADES)]
        else:
            ladder = eps_values
        problems = [p for p in (_pattern_problem(net, theta + e * v, X, offsets, K_try, e)
                                for e in ladder) if p]
        if not problems or K is not None or all(kind != "K" for kind, _ in problems):
            break
    if problems:
        return result(False, "cannot certify: " + problems[0][1],
                      _Witness(direction=v, K=K_try, eps=tuple(ladder), neurons_shifted=shifted,
                               neurons_rescaled=rescaled))

    errors = [float(np.linalg.norm(net.gradient(theta + e * v, X, Y, weight) - G)) for e in ladder]
    steps = [e * float(np.linalg.norm(v)) for e in ladder]
    # against the size of the terms of G, not ||G||, which cancellation can make as small as
    # their rounding (a cross-entropy fitted to one sample: G ~ 1e-15)
    scale = max(float(np.linalg.norm(G)), gradient_scale(net, theta, X, Y, weight))
    negligible = 1e3 * rounding_tolerance(np.float64, np.array([scale]))
    fit = [(math.log(e), math.log(err)) for e, err in zip(ladder, errors) if err > negligible]
    rate = float(np.polyfit([x for x, _ in fit], [y for _, y in fit], 1)[0]) if len(fit) >= 2 else math.inf
    theta_top = theta + ladder[0] * v
    fd_margin = kink_margin(kink_offsets(net, theta_top, X))
    fd = finite_difference_check(net, theta_top, X, Y, h=min(1e-6, 1e-2 * fd_margin),
                                 sample_weight=weight)
    numbers = _Witness(direction=v, K=K_try, eps=tuple(ladder), steps=tuple(steps),
                       errors=tuple(errors), rate=rate, finite_differences=fd,
                       neurons_shifted=shifted, neurons_rescaled=rescaled)
    if math.isinf(rate):
        first = max(e for e, err in zip(ladder, errors) if err <= negligible)
        trend = f"||∇L(θ_ε) - G(θ)|| <= {negligible:.2g} (rounding) for ε <= {first:.2g}"
    else:
        trend = f"||∇L(θ_ε) - G(θ)|| ~ ε^{rate:.2f}"
    if rate < MIN_RATE:
        return result(False, f"{trend}: it does not fall like ε, so ∇L(θ_ε) does not tend to "
                      "G(θ)", numbers)
    if not fd.passed:
        return result(False, f"{trend}, but at θ_ε finite differences disagree with ∇L: "
                      + fd.reason, numbers)
    return result(True, f"θ_ε hits no kink and keeps the derivative pattern of G(θ) for "
                  f"ε = {ladder[-1]:.2g}..{ladder[0]:.2g}; {trend}; ||θ_ε - θ|| = "
                  f"{steps[0] / ladder[0]:.3g} ε", numbers)
