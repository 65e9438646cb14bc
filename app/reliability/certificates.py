"""A variant's certificates, read once at start-up from its report card's `reliability` section.

Per domain (`in_domain` / `cross_domain` by the card's domain gate, `all` without one): the
`p_wrong` model and the certificate the evaluators computed (docs/reliability.md). The card
is bound to the weights it was measured on; `app/reliability/weights_check.py` refuses one
from other weights before anything is served. A card without a `reliability` section gives
no certificates: every answer of that variant is `uncertified`.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path

from moeprune.errors import UserError
from moeprune.formats.report_card import CertificateSpec, DomainReliability, ReliabilitySection, ReportCard
from moeprune.reliability.risk_model import RiskModel
from moeprune.reliability.signals import SIGNAL_DIRECTIONS


@dataclass(frozen=True)
class DomainCertificate:
    domain: str
    model: RiskModel | None  # None: the evaluators could not fit one (e.g. one class only)
    certificate: CertificateSpec

    def public(self, card_sha256: str) -> dict:
        """`reliability.certificate` of a response (docs/reliability.md: exactly these fields)."""
        c = self.certificate
        return {
            "status": c.status,
            "alpha": c.alpha,
            "delta": c.delta,
            "domain": self.domain,
            "coverage": c.coverage,
            "threshold": c.threshold,
            "n_calibration": c.n_calibration,
            "card_sha256": card_sha256,
        }


@dataclass(frozen=True)
class VariantCertificates:
    card: Path
    card_sha256: str  # of the card file's bytes: what an app stores with an answer for audit
    section: ReliabilitySection
    weights: str  # "verified" (digest matches the served checkpoint) or "unverified" (url: variant, no digest)
    gate_threshold: float | None  # the threshold that split the card's domains (None: one domain, "all")
    domains: dict[str, DomainCertificate] = field(default_factory=dict)

    def for_domain(self, domain: str) -> DomainCertificate | None:
        return self.domains.get(domain)

    def listing(self) -> dict:
        """What /v1/models shows: per domain the certificate, and whether the weights were checked."""
        return {
            "card_sha256": self.card_sha256,
            "weights": self.weights,
            "weights_sha256": self.section.weights_sha256,
            "base_check": self.section.base_check,
            "gate_threshold": self.gate_threshold,
            "domains": {
                name: {
                    **entry.public(self.card_sha256),
                    "error_upper": entry.certificate.error_upper,
                    "reason": entry.certificate.reason,
                    # what the calibration answers were (multiple choice / free text) and how each form fared
                    # among the certifying half's unflagged answers: the certificate bounds their mix
                    "by_form": {
                        form: figures.model_dump() for form, figures in self.section.domains[name].by_form.items()
                    },
                }
                for name, entry in self.domains.items()
            },
        }


def card_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _check_model(where: str, spec) -> RiskModel:
    """A stored p_wrong model the gateway can evaluate: lengths agree, known signals, finite numbers."""
    n = len(spec.features)
    for name in ("means", "scales", "coef"):
        if len(getattr(spec, name)) != n:
            raise UserError(
                f"{where}.model.{name}: {len(getattr(spec, name))} values for {n} features; "
                "re-run moeprune eval to rewrite the card"
            )
    unknown = [name for name in spec.features if name not in SIGNAL_DIRECTIONS]
    if unknown:
        raise UserError(
            f"{where}.model.features: unknown signal(s) {', '.join(unknown)}; known: {', '.join(SIGNAL_DIRECTIONS)}"
        )
    if len(spec.iso_x) != len(spec.iso_y):
        raise UserError(f"{where}.model.iso_y: {len(spec.iso_y)} values for {len(spec.iso_x)} iso_x points")
    if any(b < a for a, b in zip(spec.iso_x, spec.iso_x[1:])):
        raise UserError(f"{where}.model.iso_x: must be increasing")
    numbers = [*spec.means, *spec.scales, *spec.coef, spec.intercept, *spec.iso_x, *spec.iso_y]
    if not all(math.isfinite(x) for x in numbers) or any(scale <= 0 for scale in spec.scales):
        raise UserError(f"{where}.model: holds a non-finite number or a scale <= 0; re-run moeprune eval")
    return RiskModel.from_dict(spec.model_dump())


def _check_domain(where: str, domain: str, entry: DomainReliability) -> DomainCertificate:
    certificate = entry.certificate
    if certificate.status == "certified":
        if certificate.threshold is None:
            raise UserError(f"{where}.certificate.threshold: a certified domain needs its threshold")
        if entry.model is None:
            raise UserError(f"{where}.model: a certified domain needs its p_wrong model")
    model = _check_model(where, entry.model) if entry.model is not None else None
    return DomainCertificate(domain, model, certificate)


def read_certificates(
    name: str, card_path: Path, card: ReportCard, weights: str, gate_threshold: float | None
) -> VariantCertificates | None:
    """The card's certificates (None without a `reliability` section); a UserError naming a malformed field."""
    section = card.reliability
    if section is None:
        return None
    where = f"variants.{name}.report_card ({card_path}): reliability.domains"
    domains = {domain: _check_domain(f"{where}.{domain}", domain, entry) for domain, entry in section.domains.items()}
    return VariantCertificates(card_path, card_digest(card_path), section, weights, gate_threshold, domains)
