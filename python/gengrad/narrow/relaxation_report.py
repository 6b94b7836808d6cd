"""The `gengrad narrow` report for the activations that are not odd (relaxation.py): the
construction, its conditions, the checks against gengrad, the singular points, the Stokes data
and the verdict, then the same pipeline on the construction's control."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

import mpmath

from .derivation import DIGITS
from .irregular import (
    FormalInvariants,
    StokesData,
    formal_invariants,
    monodromy_identity,
    stokes_data,
    stokes_verdict,
)
from .relaxation import Relaxation, relaxation_model, splits
from .relaxation_checks import RelaxationCheck, check_relaxation

_VERDICTS = {
    "not solvable": "not solvable. Nontrivial Stokes matrices on rays of both kinds put a lower and an\n"
                    "   upper unipotent group into the NVE's Galois group over C(z), so it contains SL2\n"
                    "   and its identity component is not solvable: the NVE has no Liouvillian solution\n"
                    "   (no closed form in elementary functions, quadratures and algebraic functions of\n"
                    "   z = e^(−κt)), and by Morales-Ramis / Ayoul-Zung — in the form that adds Γ's\n"
                    "   equilibrium z = 0 and its point at infinity z = ∞ to Γ — the flow has no complete\n"
                    "   set of first integrals and commuting vector fields meromorphic near that closed\n"
                    "   curve (Bogoyavlenskij). Integrals meromorphic near Γ alone are not excluded.",
    "abelian": "abelian: every Stokes multiplier vanishes (within its bound); the Galois group is the\n"
               "   closure of the exponential torus and the formal monodromy, diagonal: no obstruction",
    "reducible": "reducible: the Stokes multipliers of one kind vanish (within their bounds); the Galois\n"
                 "   group is triangular, solvable: no obstruction",
    "undecided": "undecided: the Stokes multipliers are neither clearly zero nor clearly nonzero",
}


@dataclass
class RelaxationAnalysis:
    relaxation: Relaxation
    check: RelaxationCheck
    splits: bool
    infinity: FormalInvariants
    stokes: StokesData
    identity: float
    verdict: str


def analyse_relaxation(activation: str, control: bool = False) -> RelaxationAnalysis:
    r = relaxation_model(activation, control)
    stokes = stokes_data(r.coefficients)
    return RelaxationAnalysis(r, check_relaxation(r), splits(r), formal_invariants(r.coefficients), stokes,
                              monodromy_identity(r.coefficients, stokes), stokes_verdict(stokes))


def _num(x: Any, digits: int = 8) -> str:
    z = complex(x)
    if abs(z.imag) > 1e-12 * max(1.0, abs(z)):
        return f"{z.real:.{digits}g}{z.imag:+.{digits}g}i"
    return f"{z.real:.{digits}g}"


def _matrix(M: mpmath.matrix) -> str:
    return "[[" + "], [".join(", ".join(_num(M[i, j], 6) for j in range(2)) for i in range(2)) + "]]"


def _conditions(a: RelaxationAnalysis) -> list[tuple[str, str, bool]]:
    """The construction's assumptions as inequalities: (statement, value, holds)."""
    r, g = a.relaxation, a.relaxation.germ
    rows: list[tuple[str, str, bool]] = []
    if r.construction == "width2":
        sums = (sum(r.inputs), sum(x * y for x, y in zip(r.inputs, r.targets)))
        rows += [("Σx = 0 and Σxy = 0 (P invariant)", f"{sums[0]}, {sums[1]}", sums == (0, 0)),
                 ("σ(0) ≠ 0 (motion on P: κ = 6σ(0)² > 0)", _num(g.value), abs(g.value) > 1e-30),
                 ("σ'(0) ≠ 0 (the neurons couple)", _num(g.slope), abs(g.slope) > 1e-30),
                 ("a₁(0) ≠ a₂(0) (not the control)", f"{r.start[0]}, {r.start[1]}", r.start[0] != r.start[1])]
    else:
        sums = (sum(r.inputs), sum(x * y for x, y in zip(r.inputs, r.targets)))
        rows += [("σ'(u*) = 0 (P invariant)", f"u* = {_num(g.point, 12)}, σ'(u*) = {_num(g.slope, 3)}",
                  abs(g.slope) < mpmath.mpf(10) ** (10 - DIGITS)),
                 ("σ''(u*) ≠ 0 (the NVE is not trivial)", _num(g.curvature), abs(g.curvature) > 1e-30),
                 ("Σx ≠ 0 or Σxy ≠ 0 (not the control)", f"{sums[0]}, {sums[1]}", sums != (0, 0))]
    leading = a.infinity.leading
    rows.append(("λ₁ ≠ λ₂ (A₁'s eigenvalues: ∞ of Poincaré rank 2, unramified)",
                 ", ".join(_num(x, 6) for x in leading), len(leading) == 2 and leading[0] != leading[1]))
    return rows


def report_relaxation(activation: str, control: bool = True, out: Callable[[str], object] = print) -> str:
    """Print the construction for ``activation`` and, with ``control``, its control; return the
    verdict."""
    start = time.perf_counter()
    a = analyse_relaxation(activation)
    r, g, inf, st = a.relaxation, a.relaxation.germ, a.infinity, a.stokes
    out("Park (2024), arXiv 2408.08286, with an analytic activation that is not odd (softplus-type, as")
    out("summaries describe the paper's setting; its body could not be read).")
    out(f"construction {r}")
    where = "biases held at 0, " if r.construction == "width2" else ""
    out(f"   gengrad widths {r.widths} ({where}parameters at {r.gengrad_indices}), sample_weight ½ each")
    out(f"\n0. σ enters through its germ at u₀ = {_num(g.point, 12)}: σ = {_num(g.value)}, σ' = {_num(g.slope, 3)}, "
        f"σ'' = {_num(g.curvature)}")
    out("   conditions (the paper's 'mild conditions' for this construction):")
    for statement, value, holds in _conditions(a):
        out(f"     {statement:<62} {value:<34} {'holds' if holds else 'FAILS'}")
    out("\n1. F = −∇L with σ replaced by its germ of order 2 (exact on P and for the NVE):")
    for p, f in zip(r.params, r.field):
        out(f"     {p}' = {f}")
    out(f"   gengrad's −G on Γ against the curve's velocity: {a.check.field:.1e} (relative)")
    plane = ", ".join(f"{p} = {v}" for p, v in r.plane.items())
    out(f"\n2. invariant plane P: {plane}; F's normal components on P: {r.normal_on_plane[0]}, {r.normal_on_plane[1]}")
    out(f"\n3. particular solution Γ: z = e^(−κt), κ = {r.kappa} = {_num(r.numeric(r.kappa))};")
    out("   θ(z) = " + ", ".join(f"{p} = {r.curve[p]}" for p in r.params))
    out(f"   F(θ(z)) + κ z dθ/dz = {r.curve_residual} (symbolically); DOP853 on gengrad's gradient from z = 1 "
        f"stays within {a.check.flow:.1e} of θ(e^(−κt)) to t = {a.check.t_end:g}")
    out(f"\n4. NVE for n = {r.normal} (shifted to P), in z: dn/dz = (A₋₁/z + A₀ + A₁z) n with")
    for name, A in zip(("A₋₁", "A₀", "A₁"), r.coefficients):
        out(f"     {name} = {_matrix(A)}")
    out(f"   against fourth-order differences of gengrad's G: {a.check.normal_jacobian:.1e} (relative)")
    exponents0 = ", ".join(_num(x) for x in mpmath.eig(r.coefficients[0])[0])
    out(f"   z = 0: regular singular (simple pole; Γ's equilibrium), exponents {exponents0}")
    out(f"   z = ∞: irregular, Poincaré rank {inf.rank}; formal solutions e^(q_j) z^(ρ_j) (e_j + O(1/z)):")
    for j in range(len(inf.leading)):
        q = f"{_num(inf.leading[j])} z²/2 + {_num(inf.linear[j])} z".replace("+ -", "− ")
        out(f"     q_{j + 1} = {q},  ρ_{j + 1} = {_num(inf.exponents[j])}")
    out("   monodromy: Γ ≅ C* (z), one loop, around z = 0: a cyclic group, abelian for every network,")
    out("   so it shows nothing; the Galois group is read at ∞ (Ramis: exponential torus, formal")
    out("   monodromy, Stokes matrices).")
    out(f"\n5. Stokes data at ∞ (recessive solutions from |z| = {st.radius:.1f}, {st.terms} terms of the formal")
    out("   series, DOP853 to a common point; bound: difference from a second computation):")
    for k in range(4):
        c, bound = st.multipliers[k], st.bounds[k]
        kind = "lower" if k % 2 == 0 else "upper"
        out(f"     ray arg z = {st.rays[k]:.4f}  ({kind})  c_{k} = {_num(c, 10):<30} bound {bound:.1e}"
            f"  ({abs(c) / bound:.1e} bounds from 0)")
    out(f"   check: tr(e^(2πiR) S₃S₂S₁S₀) = tr(monodromy around 0) to {a.identity:.1e}")
    out(f"   the coefficients A(z₁), A(z₂) commute (exact: the NVE splits): {'yes' if a.splits else 'no'}")
    out(f"\n   verdict: {_VERDICTS[a.verdict]}")
    if control:
        ctrl = analyse_relaxation(activation, control=True)
        agrees = ctrl.splits and ctrl.verdict == "abelian"
        what = "a₁ = a₂ at the start" if r.construction == "width2" else "data with Σx = 0, Σxy = 0"
        out(f"\ncontrol ({what}): NVE splits exactly: {'yes' if ctrl.splits else 'no'}; largest Stokes "
            f"multiplier {max(abs(x) for x in ctrl.stokes.multipliers):.1e}; verdict {ctrl.verdict}; "
            f"agrees with theory (abelian): {'yes' if agrees else 'NO'}")
    out("\nNumerical evidence with error bounds, not a proof: the multipliers are differences of two")
    out("floating-point integrations, not enclosures.")
    out(f"total {time.perf_counter() - start:.1f} s")
    return a.verdict

