"""What each (variant, domain) certificate promises, read from the variants' report cards for live re-checking."""

from __future__ import annotations

from app.config.variants import GatewayConfig
from app.reliability.live import Levels
from moeprune.formats.report_card import ReportCard


def certificate_levels(config: GatewayConfig) -> dict[tuple[str, str], Levels]:
    """(variant, domain) -> alpha, delta and certificate; (variant, "*") carries the card's defaults.

    A variant without a card (or a card without a reliability section) is judged at the
    documented defaults (alpha = delta = 0.05) for whatever domains its answers report.
    """
    levels: dict[tuple[str, str], Levels] = {}
    for name, variant in config.variants.items():
        if variant.report_card is None:
            continue
        section = ReportCard.load(variant.report_card).reliability
        if section is None:
            continue
        levels[(name, "*")] = Levels(section.alpha, section.delta)
        for domain, reliability in section.domains.items():
            certificate = reliability.certificate
            levels[(name, domain)] = Levels(certificate.alpha, certificate.delta, certificate)
    return levels
