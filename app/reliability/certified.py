"""The certified part of a response's `reliability` object: `p_wrong`, `above_risk`, `domain`, `certificate`.

`p_wrong` is the card's model over the response's raw signals (the evaluators' own
`RiskModel.p_wrong`), and the flag is `moeprune.reliability.decision.decide`, the one comparison
the card's risk-coverage figures were computed with. No certificate for the variant and domain
(no card, no reliability section, a domain the card did not certify) or live feedback that broke
the bound (`fallback`) means `uncertified`: every answer is flagged.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.reliability.certificates import VariantCertificates
from moeprune.reliability.decision import Decision, decide


@dataclass(frozen=True)
class CertifiedVerdict:
    decision: Decision
    fields: dict  # p_wrong, above_risk, domain, certificate
    card_sha256: str | None

    @property
    def flags(self) -> list[str]:
        return [
            name
            for name, raised in (("above_risk", self.decision.above_risk), ("uncertified", self.decision.uncertified))
            if raised
        ]


def certified_verdict(
    signals: dict[str, float], certificates: VariantCertificates | None, domain: str, fallback: bool
) -> CertifiedVerdict:
    entry = certificates.for_domain(domain) if certificates is not None else None
    p_wrong = entry.model.p_wrong(signals) if entry is not None and entry.model is not None else None
    decision = decide(p_wrong, entry.certificate if entry is not None else None, fallback=fallback)
    card_sha256 = certificates.card_sha256 if certificates is not None else None
    fields = {
        "p_wrong": p_wrong,
        "above_risk": decision.above_risk,
        "domain": domain,
        # an entry comes from `certificates`, so it has a card digest
        "certificate": entry.public(card_sha256) if entry is not None and card_sha256 is not None else None,
    }
    return CertifiedVerdict(decision, fields, card_sha256)
