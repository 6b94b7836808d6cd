"""The gradient flow theta'(t) = -G(theta(t)) of a network's risk (docs/math.md §7).

``flow(net, theta0, X, Y, t_end)`` integrates it in float64 with the event-aware integrator of
the C++ core (cpp/include/gengrad/flow.hpp): Dormand-Prince 8(5,3) with error control on each
smooth piece, event location where a hidden pre-activation of some sample reaches a kink of
the activation, a restart of the method on the new piece, and Filippov sliding where the flow
is pushed into a switching surface from both sides. Smooth activations take the same path
without events.

    >>> import numpy as np, gengrad
    >>> net = gengrad.Network((1, 16, 1), "relu")
    >>> X = np.linspace(-1, 1, 64)[:, None]; Y = np.sin(3 * X)
    >>> result = gengrad.flow(net, net.init(seed=0), X, Y, t_end=50.0)
    >>> result.risk[-1] <= result.risk[0], len(result.events) > 0
    (True, True)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from numbers import Real
from typing import Any, Optional, Union

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import _core
from .arguments import count, positive, typed_array
from .ensemble import Ensemble
from .network import Network

#: The Runge-Kutta pairs (cpp/flow): "auto" switches between them.
METHODS = ("auto", "dop853", "dopri5")

#: Event kinds, in the order of the core's codes.
EVENT_KINDS = ("crossing", "sliding-start", "sliding-end")


@dataclass(frozen=True)
class Event:
    """A hidden unit (``sample``, ``layer`` 1..L-1, ``neuron``) reaching or leaving kink number
    ``kink`` of the activation at time ``t``. Pieces of the activation are numbered from the
    left (relu: 0 for z < 0, 1 for z > 0); a sliding unit has no piece (None)."""

    t: float
    layer: int
    sample: int
    neuron: int
    kink: int
    kind: str
    from_piece: Optional[int]
    to_piece: Optional[int]


class DenseOutput:
    """theta(t) for t in [0, t_end] from the interpolants of the accepted steps (order 7).

    Call it with a time or an array of times; the result has shape (d,) or (len(t), d). Across
    an event the state is continuous; the interpolant of the step that ends at the event is used
    up to it.
    """

    def __init__(self, t_step: NDArray[np.float64], h: NDArray[np.float64], stop: NDArray[np.float64],
                 coefficients: NDArray[np.float64]):
        self._t_step, self._h, self._stop = t_step, h, stop
        self._coefficients = coefficients   # (steps, 8, d): powers 0..7 of x = (t - t_step) / h

    def __call__(self, t: ArrayLike) -> NDArray[np.float64]:
        times = np.asarray(t, dtype=np.float64)
        if times.ndim > 1:
            raise ValueError(f"t must be a number or a 1-D array of times, got shape {times.shape}")
        scalar = times.ndim == 0
        times = np.atleast_1d(times)
        if len(self._stop) == 0 or not np.all((times >= 0) & (times <= self._stop[-1])):  # NaN too
            end = self._stop[-1] if len(self._stop) else 0.0
            raise ValueError(f"t must lie in [0, {end}], the interval that was integrated")
        step = np.minimum(np.searchsorted(self._stop, times, side="left"), len(self._stop) - 1)
        x = (times - self._t_step[step]) / self._h[step]
        C = self._coefficients[step]                      # (n, 8, d)
        value = C[:, -1].copy()
        for r in range(C.shape[1] - 2, -1, -1):          # Horner in x (cpp/flow/runge_kutta.hpp)
            value *= x[:, None]
            value += C[:, r]
        return value[0] if scalar else value


@dataclass
class FlowResult:
    """The integrated flow.

    ``t``, ``theta`` (len(t), d) and ``risk`` hold the state at t = 0, every accepted step's end
    and every event (unless ``save_steps=False``); ``t_eval``, ``theta_eval``, ``risk_eval`` the
    state at the requested times; ``events`` the switching events in time order;
    ``initial_pieces`` (M, l_1 + ... + l_{L-1}) the piece of every hidden unit at t = 0 (-1:
    sliding from the start), from which the events replay the pattern; ``sol`` the dense output
    (``dense_output=True``).

    ``success`` is False, with the reason in ``message``, whenever the integrator could not
    keep its invariants (every unit in its piece or on its sliding surface, a consistent
    pattern after every event) or hit a limit; the state is then the last one it trusts, at
    ``t_final``. ``stationary`` is True when ``gtol`` stopped the flow at ``t_final``: every
    later state is taken to be the final one.

    Counters: gradient evaluations (all samples; SciPy's ``nfev`` counts the same thing),
    forward passes (event nodes, risks at t_eval), forward passes with derivatives (normal
    velocities at events), one-sample passes (values and normals of deeper units), accepted and
    rejected steps, grazing touches of a surface.
    """

    t: NDArray[np.float64]
    theta: NDArray[np.float64]
    risk: NDArray[np.float64]
    events: list[Event]
    t_end: float
    t_final: float
    theta_final: NDArray[np.float64]
    risk_initial: float
    risk_final: float
    initial_pieces: NDArray[np.int8]
    n_gradient_evaluations: int
    n_forward_passes: int
    n_tangent_passes: int
    n_unit_passes: int
    n_steps: int
    n_rejected: int
    n_grazing: int
    success: bool
    stationary: bool
    message: str
    t_eval: Optional[NDArray[np.float64]] = None
    theta_eval: Optional[NDArray[np.float64]] = None
    risk_eval: Optional[NDArray[np.float64]] = None
    sol: Optional[DenseOutput] = None
    #: The events as columns: t, layer, sample, neuron, kink, kind, from, to (-1: no piece).
    event_arrays: dict[str, Union[NDArray[np.float64], NDArray[np.int64], NDArray[np.int32]]] = \
        field(default_factory=dict, repr=False)

    def event_counts(self) -> dict[str, int]:
        """How many events of each kind."""
        kinds = self.event_arrays.get("kind", np.zeros(0, np.int32))
        return {kind: int(np.count_nonzero(kinds == code)) for code, kind in enumerate(EVENT_KINDS)}

    def summary(self) -> str:
        counts = ", ".join(f"{n} {kind}" for kind, n in self.event_counts().items())
        status = ("ok" if self.success else f"FAILED: {self.message}") if not self.stationary else self.message
        return (f"gradient flow to t = {self.t_end:g}: {status}\n"
                f"  risk {self.risk_initial:.6g} -> {self.risk_final:.6g}\n"
                f"  events: {len(self.events)} ({counts}; {self.n_grazing} grazing touches)\n"
                f"  {self.n_steps} steps ({self.n_rejected} rejected), "
                f"{self.n_gradient_evaluations} gradient evaluations, "
                f"{self.n_forward_passes} forward passes, {self.n_tangent_passes} with derivatives")


def _theta0(value: ArrayLike, shape: tuple[int, ...]) -> NDArray[np.float64]:
    """theta0 in float64: arrays of another float dtype are refused (the flow is integrated in
    float64, and a silent float32 -> float64 conversion would hide a mistake), lists converted."""
    if isinstance(value, np.ndarray) and value.dtype != np.float64:
        raise TypeError(f"theta0 must be a float64 array (the flow is integrated in float64), got dtype "
                        f"{value.dtype}; convert it with theta0.astype(np.float64)")
    theta = typed_array(value, "theta0", np.float64)
    if theta.shape != shape:
        raise ValueError(f"theta0 must have shape {shape}, got {theta.shape}")
    return theta


def flow(net: Union[Network, Ensemble], theta0: ArrayLike, X: ArrayLike, Y: ArrayLike, t_end: float,
         rtol: float = 1e-8, atol: float = 1e-10, sample_weight: Optional[ArrayLike] = None,
         t_eval: Optional[ArrayLike] = None, dense_output: bool = False, save_steps: bool = True,
         first_step: Optional[float] = None, max_step: float = np.inf, max_steps: int = 1_000_000,
         event_nodes: int = 3, gtol: float = 0.0, method: str = "auto") -> Any:
    """Integrates theta' = -G(theta) from ``theta0`` over [0, ``t_end``] (docs/flow.md).

    Parameters
    ----------
    net : gengrad.Network, or gengrad.Ensemble for n flows at once
        The architecture, activation (its convention matters only where the flow starts exactly
        on a kink and both sides repel), and loss. The core integrates in float64 whatever the
        network's backend.
    theta0 : float64 array (or nested list) of shape (net.dim,); for an Ensemble (n, net.dim)
    X, Y, sample_weight : the data, as for ``Network.risk`` (float64); for an Ensemble shared
        or one per network, as for ``Ensemble.risk``.
    t_end : the final time (0: the initial state).
    rtol, atol : the local error tolerances of the Runge-Kutta method (per component,
        atol + rtol·abs(theta_i)).
    t_eval : non-decreasing times in [0, t_end] at which to report theta and the risk.
    dense_output : keep the interpolants so that ``result.sol(t)`` gives theta anywhere.
    save_steps : keep the state at every step (False saves memory on long flows).
    first_step, max_step, max_steps : step-size controls (max_steps counts accepted steps).
    event_nodes : points per step, besides its ends, at which switches are looked for; a unit
        that leaves and re-enters its piece between two of them is not seen.
    gtol : stop once every component of the field is at most gtol (0: never); the result says
        ``stationary`` and reports the final state for every later time.
    method : "auto" (Dormand-Prince 8(5,3), and 5(4) while switching events come faster than
        the tolerance would let steps grow), "dop853" or "dopri5".

    Returns a FlowResult, or for an Ensemble a list of n FlowResults (the flows run across
    threads; each is bitwise the flow of its network alone). ``success`` is False (with
    ``message``) where the integrator could not keep its invariants or hit a limit.
    """
    ensemble = isinstance(net, Ensemble)
    if not ensemble and not isinstance(net, Network):
        raise TypeError(f"net must be a gengrad.Network or gengrad.Ensemble, got {type(net).__name__}")
    network = net.network if isinstance(net, Ensemble) else net
    options: dict[str, Any] = dict(
        t_end=positive(t_end, "t_end", allow_zero=True), rtol=positive(rtol, "rtol"),
        atol=positive(atol, "atol"), first_step=0.0 if first_step is None else positive(first_step, "first_step"),
        max_steps=count(max_steps, "max_steps", 1), event_nodes=count(event_nodes, "event_nodes", 1, 64),
        dense_output=bool(dense_output), save_steps=bool(save_steps), gtol=positive(gtol, "gtol", allow_zero=True),
        method=method)
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if isinstance(max_step, bool) or not isinstance(max_step, Real) or not max_step > 0:
        raise ValueError(f"max_step must be a positive number, got {max_step!r}")
    options["max_step"] = float(max_step)
    times: Optional[NDArray[np.float64]] = None
    if t_eval is not None:
        times = np.asarray(t_eval, dtype=np.float64).reshape(-1)
        if np.any(~np.isfinite(times)) or np.any(times < 0) or np.any(times > options["t_end"]) \
                or np.any(np.diff(times) < 0):
            raise ValueError("t_eval must hold non-decreasing times in [0, t_end]")
    options["t_eval"] = times
    if isinstance(net, Ensemble):
        thetas = _theta0(theta0, (net.n, net.dim))
        thetas, X_, Y_, weight = net.arguments(thetas, X, Y, sample_weight)
        raws = _core.flow_ensemble(network.core, thetas, X_, Y_, weight, options)
        risks0 = net.risk(thetas, X_, Y_, weight)
        return [_result(raw, options, times, float(r0)) for raw, r0 in zip(raws, risks0)]
    theta = _theta0(theta0, (network.dim,))
    X_ = typed_array(X, "X", np.float64)
    Y_ = network.prepare_targets(Y, np.float64)   # the one definition of targets: class labels become one-hot rows
    weight = None if sample_weight is None else typed_array(sample_weight, "sample_weight", np.float64)
    raw = _core.flow(network.core, theta, X_, Y_, weight, options)
    return _result(raw, options, times, float(network.risk(theta, X_, Y_, weight)))


def _result(raw: dict[str, Any], options: dict[str, Any], times: Optional[NDArray[np.float64]],
            risk_initial: float) -> FlowResult:
    arrays: dict[str, Union[NDArray[np.float64], NDArray[np.int64], NDArray[np.int32]]] = {
        "t": raw["event_t"], "layer": raw["event_layer"], "sample": raw["event_sample"],
        "neuron": raw["event_neuron"], "kink": raw["event_kink"], "kind": raw["event_kind"],
        "from": raw["event_from"], "to": raw["event_to"]}
    columns = (raw[f"event_{name}"].tolist() for name in ("t", "layer", "sample", "neuron", "kink", "kind", "from",
                                                           "to"))  # Python numbers: faster to wrap
    events = [Event(t, k, m, j, i, EVENT_KINDS[c], None if a < 0 else a, None if b < 0 else b)
              for t, k, m, j, i, c, a, b in zip(*columns)]
    sol = None
    if options["dense_output"]:
        sol = DenseOutput(raw["dense_t"], raw["dense_h"], raw["dense_stop"], raw["dense_coefficients"])
    return FlowResult(
        t=raw["t"], theta=raw["theta"], risk=raw["risk"], events=events, t_end=options["t_end"],
        t_final=float(raw["t_final"]), theta_final=raw["final_theta"], risk_initial=risk_initial,
        risk_final=float(raw["final_risk"]), initial_pieces=raw["initial_pieces"],
        n_gradient_evaluations=int(raw["n_gradient"]), n_forward_passes=int(raw["n_forward"]),
        n_tangent_passes=int(raw["n_tangent"]), n_unit_passes=int(raw["n_unit"]), n_steps=int(raw["n_steps"]),
        n_rejected=int(raw["n_rejected"]), n_grazing=int(raw["n_grazing"]),
        success=bool(raw["success"]), stationary=bool(raw["stationary"]), message=str(raw["message"]),
        t_eval=times, theta_eval=raw["eval_theta"] if times is not None else None,
        risk_eval=raw["eval_risk"] if times is not None else None, sol=sol,
        event_arrays=arrays)
