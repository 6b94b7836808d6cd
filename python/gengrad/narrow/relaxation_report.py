"""The `gengrad narrow` report for the activations that are not odd (relaxation.py): the
construction, its conditions, the checks against gengrad, the singular points, the Stokes data
and the verdict, then the same pipeline on the construction's control."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Optional

import mpmath

from .derivation import DIGITS, number_text
from .irregular import FormalInvariants, formal_invariants
from .relaxation import Relaxation, relaxation_model, splits
from .relaxation_checks import RelaxationCheck, check_relaxation
from .stokes import IDENTITY_TOLERANCE, StokesData, stokes_data, stokes_verdict

_VERDICTS = {
    "not solvable": "not solvable. Nontrivial Stokes matrices on rays of both kinds put a lower and an\n"
                    "   upper unipotent group into the NVE's Galois group over C(z), so it contains SL2\n"
                    "   and its identity component is not solvable: the NVE has no Liouvillian solution\n"
                    "   (no closed form in elementary functions, quadratures and algebraic functions of\n"
                    "   z = e^(−κt)), and by Morales-Ramis / Ayoul-Zung — in the form that adds Γ's\n"
                    "   equilibrium z = 0 and its point at infinity z = ∞ to Γ — the flow has no complete\n"
                    "   set of first integrals and commuting vector fields (Bogoyavlenskij) meromorphic near\n"
                    "   that closed curve: near P in the normal coordinates, with the plane's coordinates\n"
                    "   compactified (F is polynomial in them). Integrals meromorphic near Γ alone are\n"
                    "   not excluded.",
    "abelian": "abelian: every Stokes multiplier vanishes (within its bound); the Galois group is the\n"
               "   closure of the exponential torus and the formal monodromy, diagonal: no obstruction",
    "reducible": "reducible: the Stokes multipliers of one kind vanish (within their bounds); the Galois\n"
                 "   group is triangular, solvable: no obstruction",
    "undecided": "undecided: nothing is excluded",
}


#: Largest discrepancies with gengrad (RelaxationCheck) a verdict may rest on.
CHECK_LIMITS = {"field": 1e-10, "normal_jacobian": 1e-8, "flow": 1e-8}


@dataclass
class RelaxationAnalysis:
    """One construction analysed. ``stokes`` is None when the Stokes computation could not
    reach the accuracy it needs (``reason`` says why); ``verdict`` is "undecided" then, and when
    a check against gengrad misses its limit (CHECK_LIMITS)."""

    relaxation: Relaxation
    check: RelaxationCheck
    splits: bool
    infinity: FormalInvariants
    stokes: Optional[StokesData]
    verdict: str
    reason: str


def analyse_relaxation(activation: str, control: bool = False) -> RelaxationAnalysis:
    """The construction for ``activation`` (or its control) with its checks, Stokes data and
    verdict."""
    r = relaxation_model(activation, control)
    check = check_relaxation(r)
    stokes: Optional[StokesData] = None
    try:
        stokes = stokes_data(r.coefficients)
        verdict, reason = stokes_verdict(stokes), ""
        if stokes.identity > IDENTITY_TOLERANCE:
            reason = f"the trace identity misses by {stokes.identity:.1e}"
    except ArithmeticError as error:
        verdict, reason = "undecided", str(error)
    failed = [name for name, limit in CHECK_LIMITS.items() if not getattr(check, name) <= limit]
    if failed:
        verdict, reason = "undecided", f"the check{'s' if len(failed) > 1 else ''} {', '.join(failed)} failed"
    return RelaxationAnalysis(r, check, splits(r), formal_invariants(r.coefficients), stokes, verdict, reason)


def _matrix(M: mpmath.matrix) -> str:
    return "[[" + "], [".join(", ".join(number_text(M[i, j], 6) for j in range(2)) for i in range(2)) + "]]"


def _conditions(a: RelaxationAnalysis) -> list[tuple[str, str, bool]]:
    """The construction's assumptions as inequalities: (statement, value, holds)."""
    r, g = a.relaxation, a.relaxation.germ
    rows: list[tuple[str, str, bool]] = []
    sums = (sum(r.inputs), sum(x * y for x, y in zip(r.inputs, r.targets)))
    if r.construction == "width2":
        rows += [("Σx = 0 and Σxy = 0 (P invariant)", f"{sums[0]}, {sums[1]}", sums == (0, 0)),
                 ("σ(0) ≠ 0 (motion on P: κ = 6σ(0)² > 0)", number_text(g.value), abs(g.value) > 1e-30),
                 ("σ'(0) ≠ 0 (the neurons couple)", number_text(g.slope), abs(g.slope) > 1e-30),
                 ("a₁(0) ≠ a₂(0) (not the control)", f"{r.start[0]}, {r.start[1]}", r.start[0] != r.start[1])]
    else:
        rows += [("σ'(u*) = 0 (P invariant)", f"u* = {number_text(g.point, 12)}, σ'(u*) = {number_text(g.slope, 3)}",
                  abs(g.slope) < mpmath.mpf(10) ** (10 - DIGITS)),
                 ("σ''(u*) ≠ 0 (the NVE is not trivial)", number_text(g.curvature), abs(g.curvature) > 1e-30),
                 ("Σx ≠ 0 or Σxy ≠ 0 (not the control)", f"{sums[0]}, {sums[1]}", sums != (0, 0))]
    leading = a.infinity.leading
    rows.append(("λ₁ ≠ λ₂ (A₁'s eigenvalues: ∞ of Poincaré rank 2, unramified)",
                 ", ".join(number_text(x, 6) for x in leading), len(leading) == 2 and leading[0] != leading[1]))
    return rows


def report_relaxation(activation: str, controls: bool = True, out: Callable[[str], object] = print) -> str:
    """Print the construction for ``activation`` and, with ``controls``, the same pipeline on its
    control; return the verdict."""
    if not callable(out):
        raise TypeError(f"out must be a function that prints a line, got {out!r}")
    start = time.perf_counter()
    a = analyse_relaxation(activation)
    r, g, inf, st = a.relaxation, a.relaxation.germ, a.infinity, a.stokes
    out("Park (2024), arXiv 2408.08286, with an analytic activation that is not odd (softplus-type, the")
    out("setting summaries of the paper describe); docs/narrow.md says what this reproduces and what not.")
    out(f"construction {r}")
    where = "biases held at 0, " if r.construction == "width2" else ""
    out(f"   gengrad widths {r.widths} ({where}parameters at {r.gengrad_indices}), sample_weight ½ each")
    out(f"\n0. σ enters through its germ at u₀ = {number_text(g.point, 12)}: σ = {number_text(g.value)}, "
        f"σ' = {number_text(g.slope, 3)}, "
        f"σ'' = {number_text(g.curvature)}")
    out("   the construction's conditions (the part the abstract's 'mild conditions' play):")
    for statement, value, holds in _conditions(a):
        out(f"     {statement:<62} {value:<34} {'holds' if holds else 'FAILS'}")
    out("\n1. F = −∇L with σ replaced by its germ of order 2 (exact on P and for the NVE):")
    for p, f in zip(r.params, r.field):
        out(f"     {p}' = {f}")
    out(f"   gengrad's −G on Γ against the curve's velocity: {a.check.field:.1e} (relative)")
    plane = ", ".join(f"{p} = {v}" for p, v in r.plane.items())
    out(f"\n2. invariant plane P: {plane}; F's normal components on P: {r.normal_on_plane[0]}, {r.normal_on_plane[1]}")
    out(f"\n3. particular solution Γ: z = e^(−κt), κ = {r.kappa} = {number_text(r.numeric(r.kappa))};")
    out("   θ(z) = " + ", ".join(f"{p} = {r.curve[p]}" for p in r.params))
    out(f"   F(θ(z)) + κ z dθ/dz = {r.curve_residual} (symbolically); DOP853 on gengrad's gradient from z = 1 "
        f"stays within {a.check.flow:.1e} of θ(e^(−κt)) to t = {a.check.t_end:g}")
    out(f"\n4. NVE for n = {r.normal} (shifted to P), in z: dn/dz = (A₋₁/z + A₀ + A₁z) n with")
    for name, A in zip(("A₋₁", "A₀", "A₁"), r.coefficients):
        out(f"     {name} = {_matrix(A)}")
    out(f"   against fourth-order differences of gengrad's G: {a.check.normal_jacobian:.1e} (relative)")
    exponents0 = ", ".join(number_text(x) for x in mpmath.eig(r.coefficients[0])[0])
    out(f"   z = 0: regular singular (simple pole; Γ's equilibrium), exponents {exponents0}")
    out(f"   z = ∞: irregular, Poincaré rank {inf.rank}; formal solutions e^(q_j) z^(ρ_j) (e_j + O(1/z)):")
    for j in range(len(inf.leading)):
        q = f"{number_text(inf.leading[j])} z²/2 + {number_text(inf.linear[j])} z".replace("+ -", "− ")
        out(f"     q_{j + 1} = {q},  ρ_{j + 1} = {number_text(inf.exponents[j])}")
    out("   monodromy: Γ ≅ C* (z), one loop, around z = 0: a cyclic group, abelian for every network,")
    out("   so it shows nothing; the Galois group is read at ∞ (Ramis: exponential torus, formal")
    out("   monodromy, Stokes matrices).")
    if st is None:
        out(f"\n5. Stokes data at ∞: not computed ({a.reason})")
    else:
        out(f"\n5. Stokes data at ∞ (recessive solutions from |z| = {st.radius:.1f}, where the optimally truncated")
        out(f"   formal series is accurate to {st.series_error:.0e}; DOP853 to a common point; bound: difference")
        out("   from a second computation). Each c_k depends on how the formal basis is normalised, the")
        out("   products p_k = c_k c_(k+1) of neighbours do not:")
        for k in range(4):
            c, bound, p, p_bound = st.multipliers[k], st.bounds[k], st.products[k], st.product_bounds[k]
            kind = "lower" if k % 2 == 0 else "upper"
            out(f"     ray arg z = {st.rays[k]:+.4f} ({kind})  c_{k} = {number_text(c, 10):<28} ± {bound:.0e}"
                f"   p_{k} = {number_text(p, 10):<28} ({abs(p) / p_bound:.1e} bounds from 0)")
        out(f"   check: tr(e^(2πiR) S₃S₂S₁S₀) = tr(monodromy around 0) to {st.identity:.1e}")
    out(f"   the coefficients A(z₁), A(z₂) commute (exact: the NVE splits): {'yes' if a.splits else 'no'}")
    out(f"\n   verdict: {_VERDICTS[a.verdict]}" + (f" ({a.reason})" if a.reason else ""))
    if controls:
        ctrl = analyse_relaxation(activation, control=True)
        agrees = ctrl.splits and ctrl.verdict == "abelian"
        what = "a₁ = a₂ at the start" if r.construction == "width2" else "data with Σx = 0, Σxy = 0"
        largest = "not computed" if ctrl.stokes is None else f"{max(abs(x) for x in ctrl.stokes.multipliers):.1e}"
        out(f"\ncontrol ({what}): NVE splits exactly: {'yes' if ctrl.splits else 'no'}; largest Stokes "
            f"multiplier {largest}; verdict {ctrl.verdict}; agrees with theory (abelian): {'yes' if agrees else 'NO'}")
    out("\nNumerical evidence with error bounds, not a proof: the multipliers are differences of two")
    out("floating-point integrations, not enclosures.")
    out(f"total {time.perf_counter() - start:.1f} s")
    return a.verdict

