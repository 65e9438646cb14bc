"""Each guarded variant's domain gate, loaded once at start-up, and the threshold it applies.

The threshold is the variants file's `threshold:`, else the report card's
`domain_gate.threshold` (chosen by `moeprune eval --gate-recall`), else the
one in domain_gate.json (0.5): the source travels with it, like flag thresholds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from app.config.variants import GatewayConfig, Variant
from app.guard.config import DomainGateOptions
from moeprune.errors import UserError
from moeprune.formats.domain_gate import GATE_NAME, DomainGate
from moeprune.formats.report_card import ReportCard


@dataclass(frozen=True)
class LoadedGate:
    gate: DomainGate
    threshold: float
    threshold_source: str  # "config", "report_card" or "gate_file"


def _gate_options(variant: Variant) -> DomainGateOptions:
    options = variant.guard.domain_gate if variant.guard is not None else None
    assert options is not None, "only a variant with guard.domain_gate has a gate"
    return options


def gate_path(variant: Variant) -> Path:
    options = _gate_options(variant)
    if options.file is not None:
        return options.file
    assert variant.model is not None  # check_guard: a url: variant's domain_gate names its file
    return Path(variant.model) / GATE_NAME


def load_gate(name: str, variant: Variant) -> LoadedGate:
    options = _gate_options(variant)
    try:
        gate = DomainGate.load(gate_path(variant))
    except UserError as exc:
        raise UserError(f"variants.{name}.guard.domain_gate: {exc}") from None
    if options.threshold is not None:
        return LoadedGate(gate, options.threshold, "config")
    card = ReportCard.load(variant.report_card) if variant.report_card is not None else None
    if card is not None and card.domain_gate is not None:
        return LoadedGate(gate, card.domain_gate.threshold, "report_card")
    return LoadedGate(gate, gate.threshold, "gate_file")


def load_gates(config: GatewayConfig) -> dict[str, LoadedGate]:
    """variant -> its gate, for every variant with `guard.domain_gate` (a missing file stops the start)."""
    return {
        name: load_gate(name, variant)
        for name, variant in config.variants.items()
        if variant.guard is not None and variant.guard.domain_gate is not None
    }
