"""Everything a variant's certified flags need, loaded and checked once at start-up.

The card's certificates (app/reliability/certificates.py), bound to the served weights
(weights_check.py) and to the domain gate that split the card's domains (domains.py). Any
mismatch stops the start with a message naming the variant and the fix: serving with a
certificate measured on something else would be a silent pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from app.config.variants import Variant
from app.guard.gates import LoadedGate
from app.reliability.certificates import VariantCertificates, read_certificates
from app.reliability.domains import DomainSplit
from app.reliability.weights_check import check_weights
from moeprune.errors import UserError
from moeprune.formats.domain_gate import GATE_NAME, DomainGate
from moeprune.formats.hashing import sha256_file
from moeprune.formats.report_card import ReliabilitySection, ReportCard


@dataclass(frozen=True)
class VariantReliability:
    certificates: VariantCertificates | None  # None: no card, or a card without a reliability section
    split: DomainSplit


def _gate_file(variant: Variant) -> Path | None:
    options = variant.guard.domain_gate if variant.guard else None
    if options is not None and options.file is not None:
        return options.file
    if variant.model is not None and (Path(variant.model) / GATE_NAME).is_file():
        return Path(variant.model) / GATE_NAME
    return None


def _card_split(
    name: str, variant: Variant, card: ReportCard, section: ReliabilitySection, guarded: LoadedGate | None
) -> DomainSplit:
    """The split the card's certificates (its `section`) were computed with (its gate, checked by hash, at its
    threshold)."""
    wanted = section.gate_sha256
    if wanted is None:
        return DomainSplit()
    path = _gate_file(variant)
    if path is None:
        raise UserError(
            f"variants.{name}.report_card: its certificates are per domain of a domain gate "
            f"(sha256 {wanted}), but the variant has none: put {GATE_NAME} in the model dir or "
            f"give guard.domain_gate.file"
        )
    found = sha256_file(path)
    if found != wanted:
        raise UserError(
            f"variants.{name}: the domain gate {path} (sha256 {found}) is not the one the report "
            f"card's certificates were split by (sha256 {wanted}); re-run moeprune eval with this "
            "gate, or serve the gate the card was evaluated with"
        )
    gate = guarded.gate if guarded is not None else DomainGate.load(path)
    # The split the evaluators recorded (reliability.gate_threshold), else the card's gate threshold (the one
    # `--gate-recall` chose), else the gate file's; `guard.domain_gate.threshold` moves the routing, not the
    # certificate's domains.
    threshold = section.gate_threshold
    if threshold is None:
        threshold = card.domain_gate.threshold if card.domain_gate is not None else gate.threshold
    return DomainSplit(gate, threshold)


def load_variant_reliability(name: str, variant: Variant, guarded: LoadedGate | None) -> VariantReliability:
    """`guarded`: the guard's loaded gate of this variant, if any (reused, not loaded twice)."""
    plain_split = DomainSplit(guarded.gate, guarded.threshold) if guarded is not None else DomainSplit()
    if variant.report_card is None:
        return VariantReliability(None, plain_split)
    card = ReportCard.load(variant.report_card)
    if card.reliability is None:
        return VariantReliability(None, plain_split)
    weights = check_weights(name, variant, card.reliability.weights_sha256, variant.report_card)
    split = _card_split(name, variant, card, card.reliability, guarded)
    certificates = read_certificates(name, variant.report_card, card, weights, split.threshold)
    return VariantReliability(certificates, split)
