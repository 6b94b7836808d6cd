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
in words and a readable ``str``; a check that cannot conclude says so and why. One check per
module: ``approximation``, ``certificate``, ``finite_differences``, ``kinks``; ``report`` runs them
all; ``problems`` makes problems to try them on and the rounding scales they allow. The command
`gengrad verify` is gengrad.cli.verify, the figure of R1 gengrad.plots.approximation_study.
"""
from .approximation import ApproximationStudy, approximation_study
from .certificate import SubgradientCertificate, subgradient_certificate
from .common import DEFAULT_R
from .finite_differences import FiniteDifferenceCheck, finite_difference_check
from .kinks import KinkStatistics, kink_statistics
from .problems import example_problem, rounding_scales
from .report import VerificationReport, verify

__all__ = [
    "DEFAULT_R", "ApproximationStudy", "approximation_study", "FiniteDifferenceCheck",
    "finite_difference_check", "SubgradientCertificate", "subgradient_certificate", "KinkStatistics",
    "kink_statistics", "VerificationReport", "verify", "example_problem", "rounding_scales",
]
