"""Every metric a report card may hold, registered once with its direction and kind.

Reports, plots, the recovery table and the card ask this registry whether a
metric is better high or low; nothing keeps its own "lower is better" list.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MetricInfo:
    name: str
    higher_is_better: bool
    kind: str  # "proportion" (in [0, 1]), "score" (other range), "count"
    group: str  # "multiple_choice", "summarisation", "generation", "judge"
    plotted: bool = True  # drawn against the pruning ratio in the report
    aggregation: str = "mean"  # "mean" of per-item scores, or "corpus": one value over all items

    @property
    def direction(self) -> str:
        return "higher is better" if self.higher_is_better else "lower is better"


def _mc(name, higher=True, kind="proportion", plotted=True) -> MetricInfo:
    return MetricInfo(name, higher, kind, "multiple_choice", plotted)


def _gen(name, higher=True, kind="proportion", aggregation="mean", plotted=True) -> MetricInfo:
    """Free-generation metrics (MedINST32, Med-HALT JSON answers), as the study scores them."""
    return MetricInfo(name, higher, kind, "generation", plotted, aggregation)


METRICS: dict[str, MetricInfo] = {
    m.name: m
    for m in (
        _mc("exact_match"),
        _mc("option_ll_accuracy"),
        _mc("hallucination_rate", higher=False),
        _mc("refusal_rate"),
        _mc("nota_accuracy"),
        _mc("fct_accuracy"),
        _mc("medhalt_score", kind="score"),
        _mc("ece", higher=False),
        _mc("brier", higher=False),
        _mc("unparsed_rate", higher=False, plotted=False),
        _mc("hallucination_rate_answerable", higher=False, plotted=False),
        _mc("hallucination_rate_unanswerable", higher=False, plotted=False),
        _gen("rouge_l_stemmed"),
        _gen("word_f1"),
        _gen("macro_f1", aggregation="corpus"),
        _gen("entity_f1"),
        _gen("multilabel_f1"),
        _gen("bio_f1", aggregation="corpus"),
        _gen("mse", higher=False, kind="score", aggregation="corpus"),
        MetricInfo("rouge_l", True, "proportion", "summarisation"),
        MetricInfo("token_f1", True, "proportion", "summarisation"),
        MetricInfo("faithfulness_summac_zs", True, "score", "summarisation"),
        MetricInfo("faithfulness_summac_conv", True, "proportion", "summarisation"),
        MetricInfo("bertscore_precision", True, "score", "summarisation", plotted=False),
        MetricInfo("bertscore_recall", True, "score", "summarisation", plotted=False),
        MetricInfo("bertscore_f1", True, "score", "summarisation"),
        MetricInfo("judge_hallucination_rate", False, "proportion", "summarisation"),
        MetricInfo("judge_unsupported_claim_rate", False, "proportion", "summarisation", plotted=False),
        MetricInfo("judge_claims_unparseable_rate", False, "proportion", "summarisation", plotted=False),
        MetricInfo("judge_unparseable_rate", False, "proportion", "judge", plotted=False),
        MetricInfo("judge_unparseable_count", False, "count", "judge", plotted=False),
        MetricInfo("judge_variant_more_hallucination", False, "proportion", "judge", plotted=False),
        MetricInfo("judge_variant_more_omission", False, "proportion", "judge", plotted=False),
        MetricInfo("judge_variant_more_repetition", False, "proportion", "judge", plotted=False),
        MetricInfo("judge_variant_more_aligned", True, "proportion", "judge", plotted=False),
    )
}


def metric_names(group: str) -> tuple[str, ...]:
    return tuple(name for name, info in METRICS.items() if info.group == group)


def higher_is_better(name: str) -> bool:
    """Direction of a registered metric; an unknown name is an error, never a silent default."""
    try:
        return METRICS[name].higher_is_better
    except KeyError:
        raise KeyError(f"unknown metric {name!r}; registered: {', '.join(METRICS)}") from None
