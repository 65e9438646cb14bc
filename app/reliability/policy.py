"""Flag thresholds for one variant: from its report card (`flags`), else the documented defaults."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from moeprune.formats.report_card import ReportCard
from moeprune.reliability.signals import FLAG_RULES


@dataclass(frozen=True)
class FlagPolicy:
    thresholds: dict[str, float] = field(default_factory=dict)
    baselines: dict[str, float] = field(default_factory=dict)
    source: str = "defaults"

    def threshold(self, flag: str) -> float:
        return self.thresholds.get(flag, FLAG_RULES[flag].default_threshold)


def load_policy(report_card: Path | None) -> FlagPolicy:
    """Read `flags.<name>.threshold` (and `base_rate`) from a report card; defaults without one."""
    if report_card is None:
        return FlagPolicy()
    card = ReportCard.load(report_card)
    thresholds, baselines = {}, {}
    for name, entry in card.flags.items():
        if name in FLAG_RULES and entry.threshold is not None:
            thresholds[name] = entry.threshold
        if entry.base_rate is not None:
            baselines[name] = entry.base_rate
    return FlagPolicy(thresholds, baselines, "report_card")
