"""Summary scorers beyond ROUGE: which run (from local model paths and judge endpoints) and their metrics.

`SummaryScorers` is built once per run from the options the user gave and applied to
every summarisation task's records (variant and base alike); `quality_metrics` turns
the per-record fields they set into the task's metrics. A scorer the user did not
ask for adds nothing (no metric, no "unavailable" noise).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from evaluators.hallucination_judge import hallucination_metrics, judge_claims
from evaluators.judge_endpoints import JudgeEndpoint
from evaluators.metrics.classification import mean
from evaluators.task_metrics import bootstrapped


@dataclass
class SummaryScorers:
    nli_model: str | None = None
    summac_conv_weights: str | None = None
    bertscore_model: str | None = None
    bertscore_layer: int | None = None
    hallucination_judge: JudgeEndpoint | None = None
    _loaded: dict = field(default_factory=dict)

    def _nli(self):
        from evaluators.faithfulness import NLIScorer

        return self._loaded.setdefault("nli", NLIScorer(self.nli_model))

    def _conv(self):
        from evaluators.summac_conv import ConvWeights

        return self._loaded.setdefault("conv", ConvWeights.load(self.summac_conv_weights))

    def _bert(self):
        from evaluators.bertscore import BertScorer

        return self._loaded.setdefault("bert", BertScorer(self.bertscore_model, layer=self.bertscore_layer))

    def check(self) -> None:
        """Load every local model now, so a wrong path fails before any request is sent."""
        from moeprune.errors import UserError

        if self.summac_conv_weights and not self.nli_model:
            raise UserError(
                "SummaC-Conv reads the NLI image: also give the NLI model (--nli-model)", param="summac_conv_weights"
            )
        if self.nli_model:
            self._nli()
        if self.summac_conv_weights:
            self._conv()
        if self.bertscore_model:
            self._bert()

    async def score(self, records: list[dict], cache, concurrency: int, sent: list[int] | None = None) -> None:
        """Set the per-record fields (faithfulness, faithfulness_conv, bertscore, judge_claims)."""
        from evaluators.bertscore import add_bertscore
        from evaluators.faithfulness import add_faithfulness
        from evaluators.summac_conv import add_summac_conv

        if self.nli_model:
            add_faithfulness(self.nli_model, records, self._nli())
        if self.summac_conv_weights:
            add_summac_conv(records, self._nli(), self._conv())
        if self.bertscore_model:
            add_bertscore(records, self._bert())
        if self.hallucination_judge:
            await judge_claims(self.hallucination_judge, cache, concurrency, records, sent)


def quality_metrics(records: list[dict], seed: int) -> dict:
    """Metrics from whichever per-record fields the scorers set."""
    metrics = {}
    conv = [r["faithfulness_conv"] for r in records if r.get("faithfulness_conv") is not None]
    if conv:
        metrics["faithfulness_summac_conv"] = bootstrapped(conv, mean, seed)
    scored = [r["bertscore"] for r in records if r.get("bertscore")]
    if scored:
        for position, name in enumerate(("bertscore_precision", "bertscore_recall", "bertscore_f1")):
            metrics[name] = bootstrapped([each[position] for each in scored], mean, seed)
    if any("judge_claims" in r for r in records):
        metrics.update(hallucination_metrics(records))
    return metrics


def add_summary_scoring_arguments(parser) -> None:
    """`moeprune eval` flags of the judges and the summary scorers (every model path is local)."""
    group = parser.add_argument_group("judges and summary scorers")
    group.add_argument(
        "--judge-endpoint",
        action="append",
        metavar="URL",
        help="a judge model's endpoint for the study's pairwise variant-vs-base instrument; repeat "
        "for several judges (per-judge and pooled shares)",
    )
    group.add_argument(
        "--judge-model",
        action="append",
        metavar="NAME",
        help="the judge's model name: once for all judges, or once per --judge-endpoint in order",
    )
    group.add_argument(
        "--judge-allow-tie",
        action="store_true",
        help="let the pairwise judge answer 'tie' (default: forced choice, as the study)",
    )
    group.add_argument(
        "--hallucination-judge",
        action="store_true",
        help="also score each summary's claims against its source with the first judge "
        "(DeepEval-style hallucination, per item 0/1)",
    )
    group.add_argument("--nli-model", help="local NLI sequence-classification model (SummaC-ZS faithfulness)")
    group.add_argument(
        "--summac-conv-weights",
        metavar="FILE",
        help="local SummaC-Conv weights (the published .bin or JSON); needs --nli-model",
    )
    group.add_argument("--bertscore-model", metavar="DIR", help="local encoder for BERTScore P/R/F1")
    group.add_argument("--bertscore-layer", type=int, metavar="N", help="hidden layer for BERTScore (default: last)")


def summary_scorers_from_args(args, api_key: str | None) -> SummaryScorers:
    from evaluators.judge_endpoints import judge_endpoints
    from moeprune.errors import UserError

    judge = None
    if args.hallucination_judge:
        judges = judge_endpoints(args.judge_endpoint, args.judge_model, api_key, args.model)
        if not judges:
            raise UserError("--hallucination-judge needs a judge: add --judge-endpoint URL", param="judge_endpoint")
        judge = judges[0]
    return SummaryScorers(
        nli_model=args.nli_model,
        summac_conv_weights=args.summac_conv_weights,
        bertscore_model=args.bertscore_model,
        bertscore_layer=args.bertscore_layer,
        hallucination_judge=judge,
    )
