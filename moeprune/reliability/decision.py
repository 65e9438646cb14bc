"""The one comparison a certificate makes: is this answer served unflagged?"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


class CertificateLike(Protocol):
    # Read-only members: a stored certificate's `status` is a Literal, which a settable `str` would not accept.
    @property
    def status(self) -> str: ...

    @property
    def threshold(self) -> float | None: ...


@dataclass(frozen=True)
class Decision:
    above_risk: bool  # p_wrong is above the certified threshold
    uncertified: bool  # no certified threshold applies: the answer is flagged whatever its p_wrong

    @property
    def flagged(self) -> bool:
        return self.above_risk or self.uncertified


def decide(p_wrong: float | None, certificate: CertificateLike | None, fallback: bool = False) -> Decision:
    """`fallback`: live feedback has breached the bound, so the certificate no longer applies."""
    if certificate is None or certificate.status != "certified" or certificate.threshold is None or fallback:
        return Decision(above_risk=False, uncertified=True)
    if p_wrong is None:
        return Decision(above_risk=True, uncertified=False)
    return Decision(above_risk=p_wrong > certificate.threshold, uncertified=False)
