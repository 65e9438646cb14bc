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
    others = sorted(d for d in found - {"biomedical", "general"} if d)
    return [d for d in ("biomedical", "general") if d in found] + others


def metrics_present(cards: list[dict]) -> list[str]:
    found = {
        name
        for card in cards
        for task in card.get("tasks", {}).values()
        for name, metric in task.get("metrics", {}).items()
        if metric.get("value") is not None
    }
    return [m for m in PLOTTED_METRICS if m in found]


RELIABILITY_TESTS = ("refusal_rate", "nota_accuracy")


def is_answerable(task: dict) -> bool:
    return not any(name in task.get("metrics", {}) for name in RELIABILITY_TESTS)


def utility(card: dict, domain: str | None = None) -> float | None:
    """Mean exact match over answerable tasks: not the made-up-entity (refusal rate) or none-of-the-above
    (NOTA accuracy) tests, which measure reliability: a model that abstains on everything aces NOTA."""
    values = [
        task["metrics"]["exact_match"]["value"]
        for task in card.get("tasks", {}).values()
        if is_answerable(task)
        and task.get("metrics", {}).get("exact_match", {}).get("value") is not None
        and (domain is None or task.get("domain") == domain)
    ]
    return sum(values) / len(values) if values else None


def reliability(card: dict, domain: str | None = None) -> float | None:
    """1 - mean hallucination rate over all multiple-choice tasks."""
    values = [
        task["metrics"]["hallucination_rate"]["value"]
        for task in card.get("tasks", {}).values()
        if task.get("metrics", {}).get("hallucination_rate", {}).get("value") is not None
        and (domain is None or task.get("domain") == domain)
    ]
    return 1 - sum(values) / len(values) if values else None


def base_variant(variants: list[Variant]) -> Variant | None:
    """The report's unpruned variant, when it has exactly one."""
    bases = [v for v in variants if v.method == "base"]
    return bases[0] if len(bases) == 1 else None


def base_name(variant: Variant, variants: list[Variant]) -> str:
    """What a variant was cut from: the card's own `base`, else the report's one unpruned variant."""
    if variant.card.get("base"):
        return str(variant.card["base"])
    if variant.method == "base":
        return "(is the base)"
    base = base_variant(variants)
    return base.name if base is not None else "-"


def recovery_of(variant: Variant, base: Variant | None, task: str, metric: str) -> float | None:
    """The card's recovery, else variant value / the report base's value for the same task and metric."""
    entry = variant.card.get("tasks", {}).get(task, {}).get("metrics", {}).get(metric, {})
    if entry.get("recovery") is not None:
        return entry["recovery"]
    if base is None:
        return None
    base_value = base.card.get("tasks", {}).get(task, {}).get("metrics", {}).get(metric, {}).get("value")
    value = entry.get("value")
    return value / base_value if value is not None and base_value else None


def _tasks(card: dict, domain: str | None, answerable: bool | None, metric: str) -> list[dict]:
    return [
        task["metrics"][metric]
        for task in card.get("tasks", {}).values()
        if task.get("metrics", {}).get(metric, {}).get("value") is not None
        and (domain is None or task.get("domain") == domain)
        and (answerable is None or is_answerable(task) == answerable)
    ]


def mean_with_interval(card: dict, metric: str, domain: str | None = None, answerable: bool | None = None):
    """(mean, low, high) of a metric over the matching tasks; the interval is the mean of the tasks' 95%
    bounds (exact for one task, a conservative envelope for several). None where no task has it."""
    entries = _tasks(card, domain, answerable, metric)
    if not entries:
        return None
    mean = sum(e["value"] for e in entries) / len(entries)
    bounds = [e.get("ci95") for e in entries]
    if any(b is None for b in bounds):
        return mean, None, None
    return mean, sum(b[0] for b in bounds) / len(bounds), sum(b[1] for b in bounds) / len(bounds)


def recommendations(variants: list[Variant], in_domain: str, cross_domain: str | None) -> list[dict]:
    """Per pruning ratio, the data-driven variant to ship for in-domain traffic and what it costs.

    Best = highest in-domain utility, then lowest hallucination rate, then highest cross-domain utility.
    Recovery intervals are the variant's 95% interval divided by the base's value (the base's own
    uncertainty is not propagated). Hallucination change is in points against the base, over every task
    that measures it (both domains).
    """
    base = base_variant(variants)
    if base is None:
        return []
    base_in = utility(base.card, in_domain)
    base_cross = utility(base.card, cross_domain) if cross_domain else None
    base_halluc = mean_with_interval(base.card, "hallucination_rate")
    out = []
    for ratio in sorted({v.ratio for v in variants if v.method not in ("base", "random")}):
        candidates = [v for v in variants if v.ratio == ratio and v.method not in ("base", "random")]

        def key(v):
            halluc = mean_with_interval(v.card, "hallucination_rate")
            return (
                utility(v.card, in_domain) or 0.0,
                -(halluc[0] if halluc else 1.0),
                utility(v.card, cross_domain) or 0.0 if cross_domain else 0.0,
            )

        best = max(candidates, key=key)
        tied = [v.name for v in candidates if v is not best and key(v) == key(best)]
        halluc = mean_with_interval(best.card, "hallucination_rate")
        pruning = best.card.get("pruning") or {}
        out.append(
            {
                "ratio": ratio,
                "variant": best.name,
                "method": best.method,
                "tied": tied,
                "in_domain": _scaled(mean_with_interval(best.card, "exact_match", in_domain, True), base_in),
                "cross_domain": _scaled(mean_with_interval(best.card, "exact_match", cross_domain, True), base_cross)
                if cross_domain
                else None,
                "hallucination_change": None
                if halluc is None or base_halluc is None
                else tuple(None if x is None else x - base_halluc[0] for x in halluc),
                "bytes_saved": pruning.get("bytes_saved"),
                "experts_kept": pruning.get("experts_kept"),
                "experts_total": pruning.get("experts_total"),
            }
        )
    return out


def _scaled(triple, base_value):
    if triple is None or not base_value:
        return None
    return tuple(None if x is None else x / base_value for x in triple)
