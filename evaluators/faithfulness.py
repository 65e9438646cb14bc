"""Faithfulness of summaries: SummaC-ZS-style sentence-level entailment with a local NLI model.

For every summary sentence, the best score over source sentences of
P(entailment) - P(contradiction); the summary's score is the mean over its
sentences, in [-1, 1] (1: every sentence is entailed by some source sentence).
The model is read from a local directory (never downloaded); its
`config.id2label` must name an entailment and a contradiction label.
"""

from __future__ import annotations

import re
from pathlib import Path

from moeprune.errors import UserError


def sentences(text: str) -> list[str]:
    parts = re.split(r"(?<=[.!?])\s+", text.strip())
    return [p for p in parts if p.strip()]


class NLIScorer:
    """A local sequence-classification NLI model scoring (premise, hypothesis) pairs."""

    def __init__(self, model_path: str | Path, batch_size: int = 16):
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        path = Path(model_path)
        if not (path / "config.json").is_file():
            raise UserError(f"nli_model {path} is not a local model directory (no config.json)", param="nli_model")
        self.torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(str(path))
        self.model = AutoModelForSequenceClassification.from_pretrained(str(path)).eval()
        labels = {int(i): str(name).lower() for i, name in self.model.config.id2label.items()}
        self.entail = next((i for i, name in labels.items() if name.startswith("entail")), None)
        self.contradict = next((i for i, name in labels.items() if name.startswith("contradict")), None)
        if self.entail is None or self.contradict is None:
            raise UserError(f"NLI model {path}: id2label {labels} lacks 'entailment'/'contradiction' labels")
        self.batch_size = batch_size

    def pair_probs(self, premises: list[str], hypotheses: list[str]) -> list[tuple[float, float]]:
        """(P(entailment), P(contradiction)) for each (premise, hypothesis) pair."""
        probs_out = []
        for start in range(0, len(premises), self.batch_size):
            batch = self.tokenizer(
                premises[start : start + self.batch_size],
                hypotheses[start : start + self.batch_size],
                padding=True,
                truncation=True,
                max_length=256,
                return_tensors="pt",
            )
            with self.torch.no_grad():
                probs = self.model(**batch).logits.softmax(-1)
            probs_out += list(zip(probs[:, self.entail].tolist(), probs[:, self.contradict].tolist()))
        return probs_out

    def pair_scores(self, premises: list[str], hypotheses: list[str]) -> list[float]:
        """P(entailment) - P(contradiction) for each (premise, hypothesis) pair."""
        return [entail - contradict for entail, contradict in self.pair_probs(premises, hypotheses)]

    def image(self, source: str, summary: str) -> NLIImage | None:
        """The NLI matrix of every (source sentence, summary sentence) pair; None when either is empty."""
        src, hyp = sentences(source), sentences(summary)
        if not src or not hyp:
            return None
        flat = self.pair_probs([s for _ in hyp for s in src], [h for h in hyp for _ in src])
        columns = [flat[j * len(src) : (j + 1) * len(src)] for j in range(len(hyp))]
        return NLIImage(
            entail=[[e for e, _ in col] for col in columns], contradict=[[c for _, c in col] for col in columns]
        )

    def score(self, source: str, summary: str) -> float | None:
        """SummaC-ZS: per summary sentence the best P(e) - P(c) over source sentences, then the mean."""
        image = self.image(source, summary)
        return None if image is None else image.zero_shot()


class NLIImage:
    """NLI probabilities indexed [summary sentence][source sentence] (SummaC's "image", transposed)."""

    def __init__(self, entail: list[list[float]], contradict: list[list[float]]):
        self.entail, self.contradict = entail, contradict

    def zero_shot(self) -> float:
        per_sentence = [max(e - c for e, c in zip(es, cs)) for es, cs in zip(self.entail, self.contradict)]
        return sum(per_sentence) / len(per_sentence)


def add_faithfulness(model_path, records: list[dict], scorer: NLIScorer | None = None) -> None:
    """Set `faithfulness` on each summary record (None for an empty summary)."""
    scorer = scorer or NLIScorer(model_path)
    for record in records:
        record["faithfulness"] = scorer.score(record["source"], record["response"])
