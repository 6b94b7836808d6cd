"""The narrow two-layer network of Park 2024, computationally (docs/narrow.md, docs/math.md §8).

Two families of constructions, each a particular solution Γ of the gradient flow of a
four-parameter network and the normal variational equation (NVE) along it:

- odd σ (tanh, identity) on odd data: ``derivation`` (the model, the invariant plane, Γ, the
  NVE, its singular points and exponents), ``continuation`` (monodromy by Taylor series in
  fixed point and double precision), ``group`` (what the monodromy group is, with error
  bounds), ``hypergeometric`` (Kimura's theorem where the NVE is Gauss hypergeometric),
  ``checks`` (against gengrad's generalized gradient and an accurate integration),
  ``pipeline`` (the report of `gengrad narrow`, with the contrasts), ``certification`` (the
  monodromy in ball arithmetic and a verdict the balls prove: `gengrad narrow --certify`);
- σ that are not odd (softplus, sigmoid, SiLU, GELU): ``relaxation`` (invariant planes on which
  the flow relaxes linearly, σ through its Taylor germ), ``irregular`` (formal invariants and
  formal solutions at the NVE's irregular point ∞), ``stokes`` (the Stokes multipliers and the
  verdict they give), ``relaxation_checks`` and ``relaxation_report``.

Every verdict is numerical evidence with error bounds, not a proof; docs/narrow.md states the
assumptions (A1-A5), what each verdict excludes, the checks and what they measured.
"""
from .certification import Certificate, CertifiedLoop, certify, report_certificate
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
from .irregular import FormalInvariants, FormalSolution, formal_invariants, formal_solution
from .pipeline import CONTRASTS, Analysis, Summary, analyse, report
from .relaxation import CONSTRUCTIONS, Germ, Relaxation, germ, relaxation_model, splits
from .relaxation_checks import RelaxationCheck, check_relaxation
from .relaxation_report import RelaxationAnalysis, analyse_relaxation, report_relaxation
from .stokes import StokesData, monodromy_identity, stokes_data, stokes_verdict
from .stokes_certification import StokesCertificate, certify_stokes, report_stokes_certificate

__all__ = [
    "FlowCheck", "check_against_gengrad", "check_flow", "ACTIVATIONS", "ARCHITECTURES", "N1", "N2",
    "Derivation", "Model", "S", "SingularPoint", "TargetLike", "V", "W", "derive", "exponent_polynomials",
    "model", "GroupEvidence", "MatrixLike", "Quantity", "analyse_group", "classify", "GaussForm",
    "KimuraResult", "gauss_form", "kimura", "scalar_equation", "Loop", "Monodromy", "monodromy", "CONTRASTS",
    "Analysis", "Summary", "analyse", "report", "FormalInvariants", "FormalSolution", "StokesData",
    "formal_invariants", "formal_solution", "stokes_data", "stokes_verdict", "monodromy_identity", "CONSTRUCTIONS",
    "Germ", "Relaxation", "germ", "relaxation_model", "splits", "RelaxationCheck", "check_relaxation",
    "RelaxationAnalysis", "analyse_relaxation", "report_relaxation", "Certificate", "CertifiedLoop", "certify",
    "report_certificate", "StokesCertificate", "certify_stokes", "report_stokes_certificate",
]
