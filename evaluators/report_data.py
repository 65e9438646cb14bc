"""What the report shows, computed from report cards (no plotting here)."""

from __future__ import annotations

from dataclasses import dataclass

from evaluators.metric_registry import METRICS

# Metrics plotted against the pruning ratio, in the registry's order, when present.
PLOTTED_METRICS = tuple(name for name, info in METRICS.items() if info.plotted)


@dataclass(frozen=True)
class Variant:
    name: str
    method: str  # "base" for an unpruned model
    ratio: float
    card: dict

    @property
    def label(self) -> str:
        return self.name if self.method == "base" else f"{self.name} ({self.method}, {self.ratio:g})"


def variants(cards: list[dict]) -> list[Variant]:
    out = []
    for card in cards:
        pruning = card.get("pruning") or {}
        method = pruning.get("method") or "base"
        ratio = float(pruning.get("ratio") or 0.0)
        out.append(Variant(card.get("variant") or card.get("model") or "?", method, ratio, card))
    return sorted(out, key=lambda v: (v.method != "base", v.method, v.ratio, v.name))


def domain_mean(card: dict, metric: str, domain: str) -> float | None:
    """Mean of a metric over the card's tasks of one domain (None if no task has it)."""
    values = [
        task["metrics"][metric]["value"]
        for task in card.get("tasks", {}).values()
        if task.get("domain") == domain and task.get("metrics", {}).get(metric, {}).get("value") is not None
    ]
    return sum(values) / len(values) if values else None


def domains(cards: list[dict]) -> list[str]:
    found = {task.get("domain") for card in cards for task in card.get("tasks", {}).values()}
    return [d for d in ("biomedical", "general") if d in found] + sorted(d for d in found - {"biomedical", "general"} if d)


def metrics_present(cards: list[dict]) -> list[str]:
    found = {name for card in cards for task in card.get("tasks", {}).values()
             for name, metric in task.get("metrics", {}).items() if metric.get("value") is not None}
    return [m for m in PLOTTED_METRICS if m in found]


def utility(card: dict, domain: str | None = None) -> float | None:
    """Mean exact match over answerable tasks (tasks without a refusal rate)."""
    values = [task["metrics"]["exact_match"]["value"] for task in card.get("tasks", {}).values()
              if "refusal_rate" not in task.get("metrics", {})
              and task.get("metrics", {}).get("exact_match", {}).get("value") is not None
              and (domain is None or task.get("domain") == domain)]
    return sum(values) / len(values) if values else None


def reliability(card: dict, domain: str | None = None) -> float | None:
    """1 - mean hallucination rate over all multiple-choice tasks."""
    values = [task["metrics"]["hallucination_rate"]["value"] for task in card.get("tasks", {}).values()
              if task.get("metrics", {}).get("hallucination_rate", {}).get("value") is not None
              and (domain is None or task.get("domain") == domain)]
    return 1 - sum(values) / len(values) if values else None
