"""The `gengrad narrow` report: the whole construction for one model and the contrasts."""
from __future__ import annotations

import time
from typing import Callable, Optional, TypedDict

import mpmath
import numpy as np
import sympy as sp

from .checks import FlowCheck, check_against_gengrad, check_flow
from .continuation import Monodromy, monodromy
from .derivation import (
    DIGITS,
    Derivation,
    Model,
    TargetLike,
    W,
    derive,
    exponent_polynomials,
    model,
    number_text,
    rational_target,
)
from .group import GroupEvidence, Quantity, analyse_group, point_name, trace
from .hypergeometric import GaussForm, KimuraResult, gauss_form, kimura

# --- the `gengrad narrow` report -------------------------------------------------------------------

#: The same pipeline on networks whose NVE along Γ is known to be solvable or not.
#: (architecture, activation, target, what theory says, the monodromy verdicts that agree with it)
CONTRASTS = (
    ("biased", "identity", 1, "Kimura: not Liouvillian (1/(2y*) is no integer)", ("not solvable",)),
    ("biased", "identity", "1/2", "Kimura case (i): reducible, Liouvillian", ("reducible", "abelian")),
    ("bias_free", "tanh", 1, "solvable by quadratures (neurons decouple after a time change)",
     ("reducible", "abelian")),
    ("bias_free", "identity", 1, "integrable (W1 W1ᵀ − W2ᵀ W2 conserved)", ("reducible", "abelian")),
)

_VERDICTS = {
    "not solvable": "not solvable. The monodromy group is irreducible, infinite and primitive, so\n"
                    "   its Zariski closure contains SL2 (projectively): the identity component of the\n"
                    "   NVE's differential Galois group is not solvable (the group is not virtually\n"
                    "   abelian). So the flow is not integrable in Bogoyavlenskij's sense near Γ\n"
                    "   (no complete set of meromorphic first integrals and commuting vector fields;\n"
                    "   Ayoul-Zung), and its variational equation along Γ is not solvable in\n"
                    "   Liouvillian functions.",
    "abelian": "the monodromies of Γ's loops commute: no obstruction found along this curve (monodromy\n"
               "   is Zariski-dense in the Galois group only where every singular point is regular)",
    "reducible": "reducible (a common invariant line of the loops' monodromies): no obstruction found "
                 "along this curve",
    "undecided": "undecided: the witnesses found do not settle the group",
}


def _bounded(q: Quantity) -> str:
    """A quantity with its bound; for one that differs from 0, also by how many bounds."""
    margin = f", {q.margin(0):.1e} bounds from 0" if q.differs_from(0) else ", 0 within it"
    return f"{q.label} = {number_text(q.value)}  (bound {q.bound:.1e}{margin})"


class Analysis(TypedDict):
    """What analyse returns."""

    model: Model
    derivation: Derivation
    gengrad: float
    flow: FlowCheck
    monodromy: Monodromy
    group: GroupEvidence
    gauss: Optional[GaussForm]
    kimura: Optional[KimuraResult]


class Summary(TypedDict):
    """What report returns: the verdict, and per contrast (architecture, activation, y*,
    verdict, whether it agrees with theory)."""

    verdict: str
    contrasts: list[tuple[str, str, str, str, bool]]


def analyse(architecture: str = "biased", activation: str = "tanh", target: TargetLike = 1,
            digits: Optional[int] = 30) -> Analysis:
    """The whole construction for one model: derivation, checks, monodromy, group, Kimura."""
    m = model(architecture, activation, target)
    derivation = derive(m)
    mono = monodromy(derivation, digits=digits)
    gauss = gauss_form(derivation)
    return {"model": m, "derivation": derivation, "gengrad": check_against_gengrad(derivation),
            "flow": check_flow(derivation), "monodromy": mono, "group": analyse_group(mono),
            "gauss": gauss, "kimura": None if gauss is None else kimura(*gauss.exponent_differences)}


def report(architecture: str = "biased", activation: str = "tanh", target: TargetLike = 1, digits: Optional[int] = 30,
           contrasts: bool = True, out: Callable[[str], object] = print) -> Summary:
    """Print the derivation, the checks, the monodromy evidence and the verdict for one model,
    then a summary of the same pipeline on the CONTRASTS; return the results."""
    start = time.perf_counter()
    result = analyse(architecture, activation, target, digits)
    m, d, mono, group = result["model"], result["derivation"], result["monodromy"], result["group"]
    out("Park (2024), arXiv 2408.08286, computationally. The paper's body could not be read: the")
    out("model and the curve are gengrad.narrow's stated assumptions (A1-A5 in docs/narrow.md).")
    out(f"\nmodel: {m}; L = ½ Σ (f(x) − y)² (gengrad widths {m.widths}, sample_weight (½, ½))")
    out("\n1. vector field F = −∇L (SymPy):")
    for p, f in zip(m.params, d.vector_field):
        out(f"     {p}' = {f}")
    out(f"   max ||F + G|| / ||F|| against gengrad's generalized gradient, 16 random θ: {result['gengrad']:.1e}")
    out(f"\n2. invariant plane P: {', '.join(f'{e.lhs} = 0' for e in d.plane)}  "
        f"(normal components of F on P: {d.normal_field_on_plane[0]}, {d.normal_field_on_plane[1]})")
    out(f"   on P: w' = {d.plane_field[0]},  v' = {d.plane_field[1]}")
    out(f"   first integral J = {d.first_integral};  dJ/dt on P = {d.first_integral_rate}")
    out(f"\n3. particular solution Γ: J = 0, v = {d.curve_v}, s = {sp.exp(W) if m.activation == 'tanh' else W}:"
        f"  θ(s) = {d.theta_of_s}")
    out(f"   ds/dt = {d.speed}")
    out(f"   t = T(s) − T(s(0)),  T(s) = {d.time_law}")
    out(f"   symbolic residuals: F(θ(s)) − θ'(s) ds/dt = {d.flow_residual};  T' − 1/(ds/dt) = {d.time_law_residual}")
    flow = result["flow"]
    out(f"   DOP853 (rtol 1e-12) from θ(0) = {np.array2string(flow.theta0, precision=6)} to t = {flow.t_end:g} "
        f"({flow.evaluations} evaluations, loss {flow.loss_start:.4g} -> {flow.loss_end:.3g}):")
    out(f"     max distance from Γ {flow.off_curve:.1e}, max |w(t) − w(T⁻¹(T(s(0)) + t))| {flow.time_law:.1e}, "
        f"max |J| {flow.first_integral:.1e}")
    normal = "(b, c)" if m.architecture == "biased" else "(w1 − w2, v1 − v2)"
    out(f"\n4. variational equation along Γ, ξ = (δw, δv, n), n = {normal}, in s: dξ/ds = B(s) ξ with")
    out(f"   B = [[B_t, *], [0, A]]: ∂ṅ/∂(w, v) on P = {list(d.lower_left)}, so the normal block is a")
    out("   quotient system and its Galois group a quotient of the VE's. The tangential block")
    out(f"     B_t = {d.tangential.tolist()}")
    out(f"   has the velocity ṡ dθ/ds as a solution (residual {d.tangential_residual}), so it reduces")
    out("   to a quadrature. The normal variational equation (NVE) dn/ds = A(s) n:")
    for i in range(2):
        for j in range(2):
            out(f"     A[{i + 1}{j + 1}] = {d.nve[i, j]}")
    out(f"   Fuchsian (simple poles, also at ∞): {'yes' if d.fuchsian else 'no'}")
    out(f"   {'singular point':>28}  {'factor of the denominator':<34} {'exponents (eig Res)':<30} on Γ")
    for p in d.singular_points + [d.infinity]:
        where = "∞" if p is d.infinity else point_name(p)
        exps = ", ".join(number_text(e, 8) for e in p.exponents)
        out(f"   {where:>28}  {str(p.factor):<34} {exps:<30} {'yes' if p.on_curve else 'no'}")
    out("   exponents exactly (their minimal polynomials over Q, per factor of the denominator):")
    for factor, polys in exponent_polynomials(d).items():
        out(f"     {str(factor):<34} {', '.join(str(q) for q in polys)}")
    gauss, kimura_result = result["gauss"], result["kimura"]
    if gauss is None or kimura_result is None:
        out("   Gauss hypergeometric form under ζ = s²/y*: none, so Kimura's theorem does not apply")
    else:
        out(f"   Gauss hypergeometric form in ζ = s²/y*: a = {gauss.a}, b = {gauss.b}, c = {gauss.c}; "
            f"exponent differences λ, μ, ν = {', '.join(map(str, gauss.exponent_differences))}")
        out(f"   Kimura: {kimura_result.detail}")
    out(f"\n5. monodromy: base point s = {mono.base}; {len(mono.loops)} loops; {mono.fine} against "
        f"{mono.coarse}; {sum(loop.steps for loop in mono.loops)} Taylor steps, "
        f"{sum(loop.terms for loop in mono.loops)} terms, {mono.seconds:.1f} s")
    out(f"   {'loop around':>28}  {'tr M':<40} {'det M':<40} |fine − coarse|")
    with mpmath.workdps(DIGITS):
        for loop in mono.loops:
            M = loop.matrix
            out(f"   {point_name(loop.point):>28}  {number_text(trace(M), 14):<40} "
                f"{number_text(mpmath.det(M), 14):<40} "
                f"{float(mpmath.mnorm(M - loop.coarse, 1)):.1e}")
    out("   identities the fine matrices satisfy (largest residual):")
    for name, value in mono.checks.items():
        out(f"     {name}: {float(value):.1e}")
    out(f"   group generated by the {len(mono.generators())} loops on Γ (normalised to det 1):")
    for name, q in (("irreducible", group.irreducible), ("infinite", group.infinite),
                    ("primitive", group.primitive), ("invariant line", group.invariant_line)):
        if q is not None:
            out(f"     {name}: {_bounded(q)}")
    if group.central is not None:
        holds = "not 0: their conjugates by it joined the generators" if group.central.differs_from(0) else \
            "0 within it: the loops generate Γ's whole monodromy"
        out(f"     loops off Γ against the generators: {group.central.label} = {number_text(group.central.value)} "
            f"(bound {group.central.bound:.1e}; {holds})")
    if group.verdict == "abelian" and group.commutators:
        worst = max(group.commutators, key=lambda q: q.value)
        out(f"     all commutators trivial, largest {_bounded(worst)}")
    out(f"\n   verdict: {_VERDICTS[group.verdict]}")
    if group.verdict != "not solvable" and not d.fuchsian:
        out("   The NVE has an irregular singular point: its Galois group can be larger than the\n"
            "   closure of the monodromy (Stokes data), so this is no evidence for integrability.")
    summary: Summary = {"verdict": group.verdict, "contrasts": []}
    if contrasts:
        out("\nthe same pipeline on contrasts:")
        out(f"   {'model':<30} {'loops':>5}  {'theory':<62} {'monodromy':<13} agrees")
        for arch, act, y, theory, expected in CONTRASTS:
            if (arch, act, rational_target(y)) == (m.architecture, m.activation, m.target):
                continue
            other = analyse(arch, act, y, digits)
            verdict = other["group"].verdict
            agrees = verdict in expected
            loops = len(other["monodromy"].generators())
            summary["contrasts"].append((arch, act, str(other["model"].target), verdict, agrees))
            out(f"   {arch + ', ' + act + ', y* = ' + str(other['model'].target):<30} "
                f"{loops:>5}  {theory:<62} {verdict:<13} "
                f"{('yes' if agrees else 'NO') + (' (vacuous: one loop cannot fail)' if loops < 2 else '')}")
    out("\nThis is numerical evidence with error bounds, not a proof: every conclusion above is an")
    out("inequality that holds by a margin far above the difference of two independent integrations")
    out("(and the exact identities they satisfy), but those bounds are estimates, not enclosures;")
    out("`gengrad narrow --certify` encloses the monodromy in ball arithmetic and proves the verdict.")
    out(f"total {time.perf_counter() - start:.1f} s")
    return summary
