"""Aggregate a task's per-item records into metrics with 95% confidence intervals.

Every metric is `{"value", "ci95"}`; one that cannot be computed (no
logprobs, no items of that kind) is `{"value": null, "unavailable": reason}`.
"""

from __future__ import annotations

from evaluators.metric_registry import METRICS, metric_names
from evaluators.metrics import generation as gen
from evaluators.metrics.classification import (
    MEDHALT_WRONG,
    brier_score,
    expected_calibration_error,
    hallucination_rate,
    mean,
)
from evaluators.metrics.generation import rouge_l_stemmed
from evaluators.metrics.text import rouge_l, token_f1
from moeprune.errors import UserError
from moeprune.reliability.intervals import bootstrap_interval, wilson_interval

# Every metric a task may report (evaluators/metric_registry.py); a task's `metrics` list must name a subset.
MC_METRICS = metric_names("multiple_choice")
SUMMARY_METRICS = metric_names("summarisation")
JUDGE_METRICS = metric_names("judge")
METRIC_NAMES = tuple(METRICS)


def selected(metrics: dict, names) -> dict:
    """Only the metrics a task asked for (all when it names none); names or the task's MetricSpecs."""
    names = {getattr(name, "name", name) for name in names or ()}
    return {k: v for k, v in metrics.items() if k in names} if names else metrics


def unavailable(reason: str) -> dict:
    return {"value": None, "ci95": None, "unavailable": reason}


def proportion(flags: list[bool]) -> dict:
    if not flags:
        return unavailable("no items")
    ci = wilson_interval(sum(flags), len(flags))
    return {"value": sum(flags) / len(flags), "ci95": list(ci)}


def medhalt(correct: list[bool]) -> dict:
    """Mean of +1/-0.25 = 1.25 * accuracy - 0.25, so its CI is the Wilson CI mapped the same way."""
    if not correct:
        return unavailable("no items")
    acc = proportion(correct)
    scale = 1 - MEDHALT_WRONG
    return {
        "value": scale * acc["value"] + MEDHALT_WRONG,
        "ci95": [scale * bound + MEDHALT_WRONG for bound in acc["ci95"]],
    }


def bootstrapped(values: list, statistic, seed: int) -> dict:
    value = statistic(values)
    if value is None:
        return unavailable("no items")
    ci = bootstrap_interval(values, statistic, seed=seed)
    return {"value": value, "ci95": list(ci) if ci else None}


def calibration_metrics(records: list[dict], seed: int) -> dict:
    """ECE (15 bins) and Brier from option probabilities: confidence = top option's probability."""
    scored = [r for r in records if r.get("option_probs")]
    if not scored or len(scored) < len(records):
        reason = "the endpoint returned no prompt logprobs to score the options"
        return {"option_ll_accuracy": unavailable(reason), "ece": unavailable(reason), "brier": unavailable(reason)}
    pairs = []
    for record in scored:
        probs = record["option_probs"]
        top = max(probs, key=probs.get)
        pairs.append((probs[top], top == record["gold"]))

    def ece(sample):
        return expected_calibration_error([c for c, _ in sample], [ok for _, ok in sample])

    def brier(sample):
        return brier_score([c for c, _ in sample], [ok for _, ok in sample])

    return {
        "option_ll_accuracy": proportion([ok for _, ok in pairs]),
        "ece": bootstrapped(pairs, ece, seed),
        "brier": bootstrapped(pairs, brier, seed),
    }


def mc_metrics(records: list[dict], seed: int = 0) -> dict:
    correct = [r["correct"] for r in records]
    metrics = {
        "exact_match": proportion(correct),
        **calibration_metrics(records, seed),
        "hallucination_rate": proportion([not r["correct"] and not r["abstained"] for r in records]),
        "medhalt_score": medhalt(correct),
        "unparsed_rate": proportion([r["parsed_as"] == "unparsed" for r in records]),
    }
    by_kind = {kind: [r for r in records if r["kind"] == kind] for kind in ("fake", "nota", "fct")}
    if by_kind["fake"]:
        metrics["refusal_rate"] = proportion([r["abstained"] for r in by_kind["fake"]])
    if by_kind["nota"]:
        metrics["nota_accuracy"] = proportion([r["correct"] for r in by_kind["nota"]])
    if by_kind["fct"]:
        metrics["fct_accuracy"] = proportion([r["correct"] for r in by_kind["fct"]])
    answerable = [r for r in records if r["kind"] in ("answerable", "nota", "fct")]
    if by_kind["fake"] and answerable:
        # A mixed file: report hallucination on each probe type separately too.
        metrics["hallucination_rate_answerable"] = hallucination_metric(answerable)
        metrics["hallucination_rate_unanswerable"] = hallucination_metric(by_kind["fake"])
    return metrics


def hallucination_metric(records: list[dict]) -> dict:
    rate = hallucination_rate([r["correct"] for r in records], [r["abstained"] for r in records])
    ci = wilson_interval(rate * len(records), len(records))
    return {"value": rate, "ci95": list(ci)}


def summary_metrics(records: list[dict], seed: int = 0) -> dict:
    rouge = [rouge_l(r["response"], r["reference"]) for r in records]
    f1 = [token_f1(r["response"], r["reference"]) for r in records]
    metrics = {"rouge_l": bootstrapped(rouge, mean, seed), "token_f1": bootstrapped(f1, mean, seed)}
    try:
        stemmed = [rouge_l_stemmed(r["response"], r["reference"]) for r in records]
        metrics["rouge_l_stemmed"] = bootstrapped(stemmed, mean, seed)
    except UserError as missing:  # the rouge-score package is not installed: the rest still counts
        metrics["rouge_l_stemmed"] = unavailable(str(missing))
    faithful = [r["faithfulness"] for r in records if r.get("faithfulness") is not None]
    if faithful:
        # SummaC-ZS score lies in [-1, 1]: entailment minus contradiction probability.
        metrics["faithfulness_summac_zs"] = bootstrapped(faithful, mean, seed)
    return metrics


DEFAULT_METRICS = ("rouge_l_stemmed", "word_f1")

# metric -> per-item score of (reply, reference): averaged over the items
PER_ITEM = {
    "rouge_l_stemmed": gen.rouge_l_stemmed,
    "word_f1": gen.word_f1,
    "entity_f1": gen.entity_f1,
    "multilabel_f1": gen.multilabel_f1,
}

# metric -> score of (replies, references) over the whole corpus
CORPUS = {
    "macro_f1": gen.classification_macro_f1,
    "bio_f1": gen.bio_f1,
    "mse": gen.mse,
}


def _reply(record: dict) -> str:
    """What text metrics compare with the reference: the extracted answer, else the whole reply."""
    return record.get("answer") or record.get("response") or ""


def generation_metrics(records: list[dict], seed: int = 0, names=()) -> dict:
    """A generation task's metrics, the ones its task file names (default: ROUGE-L stemmed and word F1,
    the two the study reports for every MedINST32 task). Per-item metrics are means with a bootstrap CI;
    corpus metrics (macro-F1, BIO F1, MSE) are computed over all items, their CI by resampling items.
    Text metrics compare the answer the task's extractor read (evaluators/answers.py), else the reply."""
    names = [getattr(n, "name", n) for n in names] or list(DEFAULT_METRICS)
    metrics = {}
    for name in names:
        if name in PER_ITEM:
            score = PER_ITEM[name]
            metrics[name] = bootstrapped([score(_reply(r), r["target"]) for r in records], mean, seed)
        elif name in CORPUS:
            statistic = CORPUS[name]
            pairs = [(_reply(r), r["target"]) for r in records]
            metrics[name] = bootstrapped(
                pairs, lambda sample, f=statistic: f([p for p, _ in sample], [t for _, t in sample]), seed
            )
        elif name in ("exact_match", "medhalt_score", "hallucination_rate", "refusal_rate", "unparsed_rate"):
            scored = [r for r in records if "correct" in r]
            if name == "unparsed_rate":
                metrics[name] = proportion([r["parsed_as"] == "unparsed" for r in records])
            elif not scored:
                metrics[name] = unavailable("this task's items are not scored right or wrong")
            elif name == "exact_match":
                metrics[name] = proportion([r["correct"] for r in scored])
            elif name == "medhalt_score":
                metrics[name] = medhalt([r["correct"] for r in scored])
            elif name == "hallucination_rate":
                metrics[name] = hallucination_metric(scored)
            else:
                metrics[name] = proportion([r["abstained"] for r in scored])
        else:
            metrics[name] = unavailable(f"{name} is not computed for generation tasks")
    return metrics


def with_recovery(metrics: dict, base_metrics: dict | None) -> dict:
    """Add `recovery` = variant / base to each metric (null without a base or when base is 0)."""
    for name, metric in metrics.items():
        base_value = (base_metrics or {}).get(name, {}).get("value")
        value = metric.get("value")
        metric["recovery"] = value / base_value if value is not None and base_value not in (None, 0) else None
    return metrics
