"""The narrow two-layer network of Park 2024, computationally (docs/math.md §8).

The package follows the construction step by step: ``derivation`` (steps 1-4),
``continuation`` and ``group`` (step 5), ``hypergeometric`` (step 6), ``checks`` (steps 1 and 3
against gengrad and an accurate integration) and ``pipeline`` (all of it for one model, and the
report of `gengrad narrow`).

Source and what could be read of it
-----------------------------------
Y. Park, *Absence of Closed-Form Descriptions for Gradient Flow in Two-Layer Narrow Networks*,
arXiv 2408.08286 (2024). Only the abstract and the introduction's opening were readable here
(arxiv.org/html/2408.08286v1 and its mirrors, as stored by the project's search tool); the body
— the exact model, data, activation assumptions, the integral curve, the variational equations,
their reduced form and the Galois-group argument, with their section and equation numbers —
could not be retrieved. What the readable text states: a two-layer narrow network with **four
parameters**, trained by **gradient flow**; the **Morales-Ramis** theory is applied to the
**variational equations along an integral curve**; under "mild conditions" the **identity
component G⁰ of their differential Galois group is not solvable**, hence the flow is not
not meromorphically integrable and has no Liouvillian closed form. No equation number
of the paper is quoted below because none could be read, and the paper's singular points and
exponents could not be compared with ours.

So this module builds the construction docs/math.md §8 prescribes for the model(s) it can justify,
and states each assumption.

Assumptions (A1-A5)
-------------------
A1 (model). Four parameters, scalar input and output. Main model ("biased", gengrad widths
   (1, 1, 1)): f(x) = v σ(w x + b) + c, θ = (w, b, v, c) — exactly gengrad's flat layout
   (W_1, b_1, W_2, b_2). Comparison model ("bias_free", widths (1, 2, 1) with both bias vectors
   held at 0): f(x) = v1 σ(w1 x) + v2 σ(w2 x), θ = (w1, w2, v1, v2) = gengrad's θ at indices
   (0, 1, 4, 5).
A2 (data, loss). Two samples, odd in x: (x, y) = (1, y*) and (−1, −y*) with a rational target
   y* > 0 (default 1); risk L = ½ Σ_m (f(x_m) − y_m)², i.e. gengrad's Σ_m w_m (z − y)² with
   sample_weight (½, ½). Any other positive normalisation only rescales time, which changes
   neither the curves nor the Galois groups.
A3 (activation). σ odd, analytic near the real axis, σ'(0) ≠ 0. Computed for σ = tanh (the
   odd analytic activation gengrad implements) and σ = identity (the linear network).
A4 (flow). θ' = −∇L(θ), continued to complex θ and complex time (it is meromorphic for tanh:
   rational in e^w, e^b, v, c).
A5 (integrability notions). "Integrable" in the sense of Bogoyavlenskij: a complete set of
   meromorphic first integrals and commuting meromorphic vector fields near Γ; Ayoul and Zung
   (2010) extend Morales-Ramis to this non-Hamiltonian setting: such integrability forces G⁰ of
   the variational equation along a non-equilibrium integral curve Γ to be abelian. A
   non-abelian G⁰ excludes that kind of integrability, not every first integral. If G⁰ is not
   even solvable, the variational equation is not solvable in Liouvillian functions (Kolchin),
   hence there is no Liouvillian closed form for the flow's dependence on initial conditions
   along Γ.

The construction (each step is computed, and checked, by the functions below)
-----------------------------------------------------------------------------
1. Vector field F = −∇L, symbolically (``derive``), checked against gengrad's generalized
   gradient to rounding (``check_against_gengrad``).
2. Invariant plane P. Odd σ and odd data make the risk invariant under the involution
   (w, b, v, c) ↦ (w, −b, v, −c): it maps f to x ↦ −f(−x), and the data set {(1, y*), (−1, −y*)}
   to itself. Its fixed plane P = {b = c = 0} is therefore invariant under the gradient flow
   ("biased"); this needs both odd σ and odd data. (The other symmetry of odd σ,
   (w, b, v, c) ↦ (−w, −b, −v, c), fixes {w = b = v = 0} instead.) For "bias_free" the neuron
   swap fixes P = {w1 = w2, v1 = v2}. On P the network is odd, L = (g − y*)² with the
   single composite g = v σ(w) (or 2 v σ(w)), so the reduced flow has the first integral
   J = v² − Φ(w), Φ' = 2σ/σ' (Φ = sinh² w for tanh, w² for the identity).
3. Particular solution Γ = {J = 0} ∩ P: θ(s) with v = sinh w (tanh; s = e^w) or v = w
   (identity; s = w), with the elementary time law t = T(s) − T(s₀), T' = 1/ṡ. Verified by
   substitution (F(θ(s)) − θ'(s)/T'(s) = 0 symbolically) and by integrating the full
   four-dimensional flow with DOP853 at rtol 1e-12 from a point of Γ (``check_flow``).
4. Variational equation along Γ, in the algebraic coordinate s: dξ/ds = B(s) ξ for
   ξ = (δw, δv, n) with n the coordinates normal to P. P's invariance makes B block triangular;
   the tangential block has the velocity as a known solution (a quadrature), and the normal
   block — the normal variational equation (NVE) dn/ds = A(s) n, A 2×2 rational — is a quotient
   system, so its Galois group is a quotient of the VE's. The NVE's singular points, Fuchs'
   condition (simple poles, also at ∞) and local exponents (eigenvalues of the residue
   matrices: the indicial equation of the Frobenius method for a first-order system), also
   exactly as minimal polynomials over Q (``exponent_polynomials``).
5. The obstruction, computed: monodromy matrices of the NVE along loops around every finite
   singular point (``monodromy``), by Taylor-series analytic continuation (high order, step at
   most half the distance to the nearest singular point) in complex double precision and in
   fixed-point arithmetic with 30+ digits; checks det M = exp(2πi tr Res), eigenvalues of M =
   exp(2πi ρ), and product of the loops = loop around all of them. ``analyse_group`` then looks
   for witnesses that the group is irreducible (a commutator with trace ≠ 2), infinite (an
   element whose normalised trace is not in [−2, 2]) and primitive (a generator that does not
   preserve that element's pair of eigenlines). The only algebraic subgroups of SL2 are
   reducible ones, imprimitive ones (normalisers of tori), finite ones and SL2 itself, so
   the three witnesses put SL2 in the Zariski closure of the monodromy group (projectively),
   which lies in the Galois group: G⁰ is not solvable.
6. Where the NVE is of Gauss hypergeometric type (the linear network: ζ = w²/y*), Kimura's
   theorem on the exponent differences decides the same question exactly (``kimura``).

What is shown, and what is not: the monodromy matrices are computed numerically; every
conclusion is an inequality (a trace ≠ 2, a trace ∉ [−2, 2], a sine of an angle ≠ 0) that holds
with a margin many orders of magnitude above the difference between two independent
integrations, but the error bounds are estimates, not interval-arithmetic enclosures: this is
evidence, not a proof. The exact Kimura result for the linear network is a proof for that case
(given Kimura's and Ayoul-Zung's theorems).

Findings beyond the brief
-------------------------
- The linear ("identity") biased network is *not* integrable either: along the same curve its
  NVE is Gauss hypergeometric with a = ½, b = −½, c = (1 + y*)/(2y*), exponent differences
  λ = (y* − 1)/(2y*), μ = (y* + 1)/(2y*), ν = 1, and Kimura's conditions hold only when
  1/(2y*) is an integer. So the linear activation is no integrable contrast for the biased
  model: with the biases, even the linear network's flow is not integrable.
- Contrasts: the biased linear network at y* = 1/2 (reducible NVE, Kimura case (i)), and the
  bias-free networks, whose loops along Γ commute. That the bias-free flows look integrable
  here is an artefact of the odd data: with (1, y*) and (−1, −y*) and odd σ the two samples
  carry the same information, so the problem has one sample; it says nothing about bias-free
  networks on general data or with non-odd σ. The bias-free identity network has a single
  loop on Γ, and one matrix always generates an abelian group: that contrast cannot fail, and
  the report says so.

What the verdicts can and cannot say: the loops around the singular points of the s-plane
generate a subgroup of the monodromy along Γ (in the curve's own parameter the s-plane is a
cover), and monodromy lies in the differential Galois group, with Zariski-dense image only where
every singular point is regular (Schlesinger). So "not solvable" (SL2 in the closure of the
subgroup) is a valid obstruction in every case, while "abelian" and "reducible" only mean that no
obstruction was found, and where the NVE has an irregular singular point (``fuchsian`` false)
they say nothing about the Galois group, whose Stokes data the monodromy does not see.

References: J. J. Morales-Ruiz, *Differential Galois Theory and Non-Integrability of Hamiltonian
Systems* (1999), Thm 2.8 (Kimura's table); M. Ayoul, N. T. Zung, *Galoisian obstructions to
non-Hamiltonian integrability*, C. R. Math. 348 (2010); T. Kimura, *On Riemann's equations
which are solvable by quadratures*, Funkcial. Ekvac. 12 (1969).
"""
from .checks import FlowCheck, check_against_gengrad, check_flow
from .continuation import Loop, Monodromy, monodromy
from .derivation import (
    ACTIVATIONS,
    ARCHITECTURES,
    N1,
    N2,
    Derivation,
    Model,
    S,
    SingularPoint,
    TargetLike,
    V,
    W,
    derive,
    exponent_polynomials,
    model,
)
from .group import GroupEvidence, MatrixLike, Quantity, analyse_group, classify
from .hypergeometric import GaussForm, KimuraResult, gauss_form, kimura, scalar_equation
from .irregular import FormalInvariants, FormalSolution, StokesData, formal_invariants, formal_solution, stokes_data
from .pipeline import CONTRASTS, Analysis, Summary, analyse, report
from .relaxation import CONSTRUCTIONS, Germ, Relaxation, germ, relaxation_model, splits
from .relaxation_checks import RelaxationCheck, check_relaxation
from .relaxation_report import RelaxationAnalysis, analyse_relaxation, report_relaxation

__all__ = [
    "FlowCheck", "check_against_gengrad", "check_flow", "ACTIVATIONS", "ARCHITECTURES", "N1", "N2",
    "Derivation", "Model", "S", "SingularPoint", "TargetLike", "V", "W", "derive", "exponent_polynomials",
    "model", "GroupEvidence", "MatrixLike", "Quantity", "analyse_group", "classify", "GaussForm",
    "KimuraResult", "gauss_form", "kimura", "scalar_equation", "Loop", "Monodromy", "monodromy", "CONTRASTS",
    "Analysis", "Summary", "analyse", "report", "FormalInvariants", "FormalSolution", "StokesData",
    "formal_invariants", "formal_solution", "stokes_data", "CONSTRUCTIONS", "Germ", "Relaxation", "germ",
    "relaxation_model", "splits", "RelaxationCheck", "check_relaxation", "RelaxationAnalysis", "analyse_relaxation",
    "report_relaxation",
]
