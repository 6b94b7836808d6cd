"""The paper's claims as checks you run on your own network (docs/math.md §5-§6).

Dereich, Do, Jentzen and Weber (arXiv 2501.15646) prove three things about the generalized
gradient G(θ) that gengrad computes. Each function here turns one of them into a procedure on a
given network, θ and data, and returns the numbers together with a verdict and its reason:

- :func:`approximation_study` (R1): ∇L_r of every approximant family on a ladder of r. The
  admissible families reach G exactly once 1/r is below the smallest nonzero distance of a
  hidden pre-activation to a kink, and so agree with each other; the softplus families need not.
- :func:`subgradient_certificate` (R2): the witness θ_ε → θ of docs/math.md §5, points where the risk
  is C¹ and whose gradients tend to G(θ); so G(θ) is a limiting Fréchet subgradient.
- :func:`finite_difference_check` (R3): where no pre-activation hits a kink the risk is C¹ and
  G equals central differences in float64.
- :func:`kink_statistics`: exact kink hits per layer, what the one-sided convention changes,
  float32 against float64 (docs/math.md §6).

:func:`verify` runs all four. Every result is a frozen dataclass with ``passed``, a ``reason``
in words and a readable ``str``; a check that cannot conclude says so and why.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional, Sequence, TypedDict

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from . import activations, plots
from . import reference as R
from .network import Network

DEFAULT_R = tuple(10.0 ** np.arange(1, 9))
#: K tried in turn when the caller leaves it open: the smallest that puts every kink-hitting
#: pre-activation on its convention's side is the best conditioned.
_K_LADDER = (10.0, 100.0, 1000.0, 10000.0)
_EPS_DECADES = 5
#: below this slope ||∇L(θ_ε) - G(θ)|| is not O(ε)
_MIN_RATE = 0.9


# --- shared pieces ------------------------------------------------------------------------------

def _numeric(value: ArrayLike, name: str, dtype: Optional[DTypeLike] = None) -> np.ndarray:
    try:
        return np.asarray(value, dtype)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be an array of numbers, got {value!r:.80}") from None


def _problem(net: Network, theta: ArrayLike, X: ArrayLike, Y: ArrayLike, sample_weight: Optional[ArrayLike],
             dtype: Optional[DTypeLike] = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, Optional[np.ndarray]]:
    """theta, X, Y and the weights as arrays of one float dtype (theta's unless ``dtype`` is
    given; integer theta counts as float64); integer class labels in Y stay labels."""
    if not isinstance(net, Network):
        raise TypeError(f"net must be a gengrad.Network, got {type(net).__name__}")
    theta = _numeric(theta, "theta")
    if theta.dtype.kind in "iub":
        theta = theta.astype(np.float64)
    dtype = np.dtype(dtype or theta.dtype)
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"theta must have dtype float32 or float64, got {theta.dtype}")
    if theta.shape != (net.dim,):
        raise ValueError(f"theta must have shape ({net.dim},) for widths {net.widths}, "
                         f"got {theta.shape}")
    Y = _numeric(Y, "Y")
    Y = Y if Y.dtype.kind in "iu" else _numeric(Y, "Y", dtype)
    weight = None if sample_weight is None else _numeric(sample_weight, "sample_weight", dtype)
    return theta.astype(dtype), _numeric(X, "X", dtype), Y, weight


def _ladder(values: ArrayLike, name: str, descending: bool) -> list[float]:
    """A sorted list of positive finite numbers."""
    values = _numeric(values, name, np.float64).ravel()
    if not values.size or not np.all(np.isfinite(values) & (values > 0)):
        raise ValueError(f"{name} must be positive finite numbers, got {values.tolist()!r}")
    return sorted(values.tolist(), reverse=descending)


def _sibling(net: Network, convention: activations.Convention = None, backend: Optional[str] = None) -> Network:
    """The same network with another convention or backend."""
    act = net.activation if convention is None else net.activation.with_convention(convention)
    return Network(net.widths, act, loss=net.loss, backend=backend or net.backend)


def _kink_offsets(net: Network, theta: np.ndarray, X: np.ndarray) -> list[np.ndarray]:
    """Per hidden layer, z^k - κ_i for every sample, neuron and kink: shape (M, l_k, kinks)."""
    kinks = np.asarray(net.activation.kinks, dtype=theta.dtype)
    return [z[:, :, None] - kinks for z in net.pre_activations(theta, X)[:-1]]


def _smallest_nonzero_distance(offsets: Sequence[np.ndarray]) -> float:
    """The smallest nonzero |z - κ| over hidden pre-activations and kinks (inf if none)."""
    distances = [np.abs(o[o != 0]) for o in offsets]
    distances = [d for d in distances if d.size]
    return float(min(d.min() for d in distances)) if distances else math.inf


def _margin(offsets: Sequence[np.ndarray]) -> float:
    """The distance of the nearest hidden pre-activation to a kink (0 at a hit; inf if none)."""
    values = [np.abs(o).min() for o in offsets if o.size]
    return float(min(values)) if values else math.inf


def _sides(offsets: Sequence[np.ndarray]) -> list[np.ndarray]:
    return [np.sign(o) for o in offsets]


def _hits(offsets: Sequence[np.ndarray]) -> int:
    """(sample, neuron) pairs whose pre-activation is exactly at a kink."""
    return int(sum(np.count_nonzero((o == 0).any(axis=2)) for o in offsets))


def _rounding_tolerance(dtype: DTypeLike, G: np.ndarray) -> float:
    """Differences this small are summation-order rounding, not mathematics."""
    return float(64 * np.finfo(dtype).eps * max(float(np.linalg.norm(G)), np.finfo(dtype).tiny))


def _number(x: float) -> str:
    return "0" if x == 0 else f"{x:.3g}"


def _verdict(passed: bool) -> str:
    return "passed" if passed else "FAILED"


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
        lines = [f"R1 approximation: {_verdict(self.passed)}. {self.reason}",
                 f"  {'r':>9} " + " ".join(f"{f + ('' if f in self.admissible else '*'):>17}"
                                            for f in families)]
        for i, r in enumerate(self.r_values):
            mark = ">" if r > self.r_star else " "
            lines.append(f"  {mark}{r:8.1e} " + " ".join(f"{_number(self.errors[f][i]):>17}"
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
    theta, X, Y, weight = _problem(net, theta, X, Y, sample_weight)
    ladder = _ladder(r_values, "r_values", descending=False)
    families = [activations.check_family(f) for f in families]
    if not families:
        raise ValueError("families must name at least one approximant family")
    # without kinks every family is the activation itself
    admissible = tuple(f for f in families
                       if activations.FAMILIES[f] or not net.activation.kinks)

    G = net.gradient(theta, X, Y, weight)
    gap = _smallest_nonzero_distance(_kink_offsets(net, theta, X))
    r_star = 1.0 / gap
    if ladder[-1] <= r_star and math.isfinite(2 * r_star):
        ladder.append(2 * r_star)
    tolerance = _rounding_tolerance(theta.dtype, G)

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
    failures = [f"{f} is {_number(errors[f][i])} from G at r = {ladder[i]:.3g} > r*"
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
                f"{f} {_number(errors[f][-1])} away" for f in others)
    return ApproximationStudy(tuple(ladder), {f: tuple(e) for f, e in errors.items()},
                              admissible, exact_from, gap, r_star, agreement, bitwise, tolerance,
                              passed, reason)


# --- R3: finite differences where the risk is C¹ ------------------------------------------------

@dataclass(frozen=True, eq=False)
class FiniteDifferenceCheck:
    """G against central differences (L(θ + h e_i) - L(θ - h e_i)) / 2h in float64 (R3).

    ``margin`` is the distance of the nearest hidden pre-activation to a kink (0 when θ hits
    one: then L need not be differentiable at θ and the check does not apply). Coordinates
    whose step ±h moves a pre-activation across a kink (``crossing``) compare two pieces of L,
    so a disagreement there says the step is too large for the margin, not that G is wrong.
    ``max_relative_error`` is max_i |FD_i - G_i| / max_i |G_i| over the other coordinates.
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
        verdict = _verdict(self.passed) if self.applicable else "not applicable"
        return f"R3 finite differences: {verdict}. {self.reason}"


def finite_difference_check(net: Network, theta: ArrayLike, X: ArrayLike, Y: ArrayLike, h: float = 1e-6,
                            rtol: float = 1e-6, sample_weight: Optional[ArrayLike] = None, max_coordinates: int = 2000,
                            seed: int = 0) -> FiniteDifferenceCheck:
    """G(θ) against central finite differences of the float64 risk (docs/math.md §5, R3).

    Checks every coordinate, or a random ``max_coordinates`` of them (seeded) when d is larger.
    Coordinate i agrees when |FD_i - G_i| <= rtol max|G| + the rounding of the difference
    quotient, 100 eps S / h, where S bounds the terms the risk is computed from (the risk and
    Σ w_m s_m (1 + s_m + |y_m|), s_m the size of what z^L_m is summed from (rounding_scales):
    the cross-entropy of a confident output is a difference of two numbers of size |z^L|, and
    an output can cancel to 0).
    """
    theta, X, Y, weight = _problem(net, theta, X, Y, sample_weight, np.float64)
    if not (isinstance(h, (int, float)) and math.isfinite(h) and h > 0):
        raise ValueError(f"h must be a positive finite number, got {h!r}")
    if isinstance(max_coordinates, bool) or not isinstance(max_coordinates, int) \
            or max_coordinates < 1:
        raise ValueError(f"max_coordinates must be a positive integer, got {max_coordinates!r}")
    offsets = _kink_offsets(net, theta, X)
    margin, hits = _margin(offsets), _hits(offsets)
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

    sides = _sides(offsets)
    crossing = []
    for far in np.flatnonzero(difference > tolerance):
        step[coords[far]] = h
        for moved in (theta + step, theta - step):
            if any(not np.array_equal(a, b)
                   for a, b in zip(_sides(_kink_offsets(net, moved, X)), sides)):
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
        lines = [f"R2 limiting-subgradient certificate: {_verdict(self.passed)}. {self.reason}"]
        if self.eps:
            lines.append(f"  witness {self.witness}, K = {self.K:g}: {self.neurons_shifted} "
                         f"bias shift(s), {self.neurons_rescaled} rescaling(s) for "
                         f"{self.kink_hits} kink hit(s)")
            lines.append(f"  {'eps':>9} {'||θ_ε - θ||':>13} {'||∇L(θ_ε) - G(θ)||':>20}")
            lines += [f"  {e:9.1e} {s:13.3g} {_number(err):>20}"
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
    for k, (old, new) in enumerate(zip(offsets, _kink_offsets(net, theta_eps, X)), start=1):
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
        eps_values = _ladder(eps_values, "eps_values", descending=True)
    theta, X, Y, weight = _problem(net, theta, X, Y, sample_weight, np.float64)
    G = net.gradient(theta, X, Y, weight)
    offsets = _kink_offsets(net, theta, X)
    hits = _hits(offsets)

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
    for K_try in (_K_LADDER if K is None else (float(K),)):
        v = _witness_vector(net, directions, K_try)
        if eps_values is None:
            top = 0.1 * margin / K_try ** depth
            for _ in range(8):
                trouble = _pattern_problem(net, theta + top * v, X, offsets, K_try, top)
                if not trouble or trouble[0] != "eps":
                    break
                top /= 10
            ladder = [top * 10.0 ** -i for i in range(_EPS_DECADES)]
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
    negligible = 1e3 * _rounding_tolerance(np.float64, G)
    fit = [(math.log(e), math.log(err)) for e, err in zip(ladder, errors) if err > negligible]
    rate = float(np.polyfit([x for x, _ in fit], [y for _, y in fit], 1)[0]) if len(fit) >= 2 else math.inf
    theta_top = theta + ladder[0] * v
    fd_margin = _margin(_kink_offsets(net, theta_top, X))
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
    if rate < _MIN_RATE:
        return result(False, f"{trend}: it does not fall like ε, so ∇L(θ_ε) does not tend to "
                      "G(θ)", numbers)
    if not fd.passed:
        return result(False, f"{trend}, but at θ_ε finite differences disagree with ∇L: "
                      + fd.reason, numbers)
    return result(True, f"θ_ε hits no kink and keeps the derivative pattern of G(θ) for "
                  f"ε = {ladder[-1]:.2g}..{ladder[0]:.2g}; {trend}; ||θ_ε - θ|| = "
                  f"{steps[0] / ladder[0]:.3g} ε", numbers)


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
        return (f"kink statistics: {_verdict(self.passed)}. {self.reason}\n"
                f"  exact hits per hidden layer: float64 {list(self.counts64)}, "
                f"float32 {list(self.counts32)}\n"
                f"  ||G_left - G_right||: float64 {_number(self.convention_gap64)}, float32 "
                f"{_number(self.convention_gap32)}; ||G32 - G64|| / ||G64|| = "
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
        t, x, y, w = _problem(net, theta, X, Y, sample_weight, dtype)
        # the reference backend computes in float64 only
        base = net if dtype == np.float64 else _sibling(net, backend="cpp")
        counts[dtype] = tuple(int(c) for c in base.kink_counts(t, x))
        grads[dtype] = base.gradient(t, x, y, w)
        if net.activation.kinks:
            left = _sibling(base, "left").gradient(t, x, y, w)
            right = _sibling(base, "right").gradient(t, x, y, w)
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
                  f"convention changes G by {_number(gaps[np.float64])} (float64)")
        if not hit64:
            reason += " (0, as it must without hits)"
    return KinkStatistics(counts[np.float32], counts[np.float64], gaps[np.float32],
                          gaps[np.float64], relative, passed, reason)


# --- all of it ----------------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class VerificationReport:
    approximation: ApproximationStudy
    certificate: SubgradientCertificate
    finite_differences: FiniteDifferenceCheck
    kinks: KinkStatistics

    @property
    def passed(self) -> bool:
        return all(check.passed for check in (self.approximation, self.certificate,
                                              self.finite_differences, self.kinks))

    def __str__(self) -> str:
        parts = [self.kinks, self.approximation, self.certificate, self.finite_differences]
        verdict = "all checks passed" if self.passed else "SOME CHECKS FAILED"
        return "\n\n".join(str(p) for p in parts) + f"\n\n{verdict}"


def verify(net: Network, theta: ArrayLike, X: ArrayLike, Y: ArrayLike,
           sample_weight: Optional[ArrayLike] = None) -> VerificationReport:
    """The approximation study, the subgradient certificate, the finite-difference check and
    the kink statistics of ``net`` at θ on (X, Y)."""
    return VerificationReport(
        approximation_study(net, theta, X, Y, sample_weight=sample_weight),
        subgradient_certificate(net, theta, X, Y, sample_weight=sample_weight),
        finite_difference_check(net, theta, X, Y, sample_weight=sample_weight),
        kink_statistics(net, theta, X, Y, sample_weight=sample_weight))


# --- inputs and outputs for the `gengrad verify` command ----------------------------------------

def parse_convention(text: Optional[str]) -> activations.Convention:
    """None, "left", "right", a number, or comma-separated numbers (one per kink)."""
    if text is None or text in ("left", "right"):
        return text
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise ValueError(f"convention must be left, right, a number or numbers separated by "
                         f"commas, got {text!r}") from None
    return values[0] if len(values) == 1 else tuple(values)


def example_problem(net: Network, data: str, samples: int, seed: int = 0,
                    dtype: DTypeLike = np.float64) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(θ, X, Y) for trying the checks.

    ``data="kink"``: integers in [-2, 2] for θ and X (and Y), so that many pre-activations are
    exactly 0, ±1, ... -- on the kinks; ``data="random"``: θ ~ 0.7 N(0, 1), X, Y ~ N(0, 1), which
    hits no kink (almost surely). For cross-entropy Y is one-hot.
    """
    if data not in ("kink", "random"):
        raise ValueError(f"data must be 'kink' or 'random', got {data!r}")
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise ValueError(f"samples must be a positive integer, got {samples!r}")
    rng = np.random.default_rng(seed)
    width_in, width_out = net.widths[0], net.widths[-1]
    if data == "kink":
        theta = rng.integers(-2, 3, size=net.dim).astype(np.float64)
        X = rng.integers(-2, 3, size=(samples, width_in)).astype(np.float64)
    else:
        theta = rng.normal(size=net.dim) * 0.7
        X = rng.normal(size=(samples, width_in))
    if net.loss == "cross_entropy":
        Y = np.eye(width_out)[rng.integers(0, width_out, size=samples)]
    else:
        Y = rng.normal(size=(samples, width_out))
        Y = np.round(Y) if data == "kink" else Y
    return theta.astype(dtype), X.astype(dtype), Y.astype(dtype)


def plot_approximation(study: ApproximationStudy, path: str) -> None:
    """Draw ||∇L_r - G|| against r (log-log), one line per family, to ``path`` (written
    atomically; the format follows the extension). Exact zeros are drawn on the bottom edge."""
    plt = plots.pyplot()
    positive = [e for errs in study.errors.values() for e in errs if e > 0]
    floor = min(positive) / 10 if positive else 1e-16
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for family, errs in study.errors.items():
        style = "-o" if family in study.admissible else "--s"
        label = family + ("" if family in study.admissible else " (not admissible)")
        ax.loglog(study.r_values, [max(e, floor) for e in errs], style, label=label, ms=4)
    if math.isfinite(study.r_star) and study.r_star > 0:
        ax.axvline(study.r_star, color="gray", lw=0.8, ls=":")
        ax.text(study.r_star, floor, " r* = 1/gap", color="gray", va="bottom")
    ax.set_xlabel("r")
    ax.set_ylabel("||∇L_r(θ) − G(θ)||   (0 drawn at the bottom edge)")
    ax.set_title("R1: gradients of the approximant networks against G")
    ax.legend(fontsize=8)
    fig.tight_layout()
    try:
        plots.save(fig, path)
    finally:
        plt.close(fig)


def rounding_scales(theta: ArrayLike, widths: Sequence[int], activation: activations.Activation, X: ArrayLike,
                    Y: ArrayLike, loss: str = "squared_error", sample_weight: Optional[ArrayLike] = None
                    ) -> tuple[list[np.ndarray], float, np.ndarray]:
    """How large the rounding errors of a correct implementation can be, in units of the unit
    roundoff: (per-layer pre-activation error scales, risk error scale, gradient error scale).

    First-order running error analysis: each quantity carries its magnitude and its error; the
    error of a sum is the errors carried in plus the sum of the magnitudes added up, so
    cancellation (a softmax cross-entropy of 1e-9 computed as lse(z) - z_y = 18 - 18, gelu's
    1 + erf(z/sqrt 2) at z = -7, an output 1.1 - 1.1 = 0) does not make a correct result look
    wrong, while a wrong convention or formula still moves results by the size of G itself.
    Multiply by the dtype's eps, and a small safety factor, for error bounds.
    """
    act = activation
    X, Y = np.asarray(X, np.float64), np.asarray(Y, np.float64)
    M = X.shape[0]
    w = np.full(M, 1.0 / M) if sample_weight is None else np.asarray(sample_weight, np.float64)
    params = R.unflatten(theta, widths)
    zs = R.pre_activations(theta, widths, act, X)
    slopes = [np.abs(R.generalized_derivative(act, z)) for z in zs[:-1]]
    curvature = 0.0 if act.piecewise_linear else 1.0      # bounds |a''| of every smooth activation
    h = [np.abs(X)]                                       # magnitudes of h^0, ..., h^{L-1}
    h_error = [h[0]]
    z_error = []
    for k, (W, b) in enumerate(params):
        z_error.append((h[k] + h_error[k]) @ np.abs(W).T + np.abs(b))
        if k < len(params) - 1:
            z = zs[k]
            h.append(np.abs(R.activation_value(act, z)))
            h_error.append(slopes[k] * z_error[k] + h[k + 1] + curvature * np.abs(z))
    Z = zs[-1]
    dloss = np.abs(R.loss_gradient(loss, Z, Y))
    loss_error = np.abs(R.loss_values(loss, Z, Y)) + (dloss * z_error[-1]).sum(axis=1)
    if loss == "cross_entropy":   # lse(z) - z_y cancels; the Hessian in z is bounded by 1
        mass = np.abs(Y).sum(axis=1)
        loss_error += mass * (np.abs(Z).max(axis=1) + 1.0)
        delta_error = w[:, None] * (dloss + mass[:, None] * z_error[-1])
    else:
        delta_error = w[:, None] * (dloss + 2.0 * z_error[-1])
    delta = w[:, None] * dloss
    grads = []
    for k in range(len(params) - 1, -1, -1):
        grads.append(np.concatenate([(delta_error.T @ h[k] + delta.T @ h_error[k]).ravel(),
                                     delta_error.sum(axis=0) + delta.sum(axis=0)]))
        if k > 0:
            W = np.abs(params[k][0])
            back, back_error = delta @ W, (delta_error + delta) @ W
            delta, delta_error = (slopes[k - 1] * back,
                                  slopes[k - 1] * back_error + curvature * z_error[k - 1] * back)
    return z_error, float(np.sum(w * loss_error)), np.concatenate(grads[::-1])
