"""All four checks on one network: the verification report."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from numpy.typing import ArrayLike

from ..network import Network
from .approximation import ApproximationStudy, approximation_study
from .certificate import SubgradientCertificate, subgradient_certificate
from .finite_differences import FiniteDifferenceCheck, finite_difference_check
from .kinks import KinkStatistics, kink_statistics

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
