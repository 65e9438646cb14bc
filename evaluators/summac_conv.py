"""SummaC-Conv: a learned read-out of the NLI image, from a local weights file (never downloaded).

SummaC-Conv (Laban et al., 2022) scores a summary in four steps, all here:

1. the NLI image: P(entailment) of every (source sentence, summary sentence) pair
   (`evaluators.faithfulness.NLIScorer.image`);
2. per summary sentence j, the histogram h_j (counts) of its column of entailment
   probabilities over fixed bin edges in [0, 1];
3. a linear read-out per sentence, r_j = w . h_j + b, over the first `n_rows` summary
   sentences (the published model uses 10; later sentences are ignored, as there);
4. m = mean_j r_j, logits = W_final [m, m, m] + b_final (two classes), and the score is
   softmax(logits)[1], the probability that the summary is consistent, in [0, 1].

The weights come from a local file: the authors' published state dict
(`summac_conv_vitc_sent_perc_e.bin`, keys `mlp.weight` [1, B], `mlp.bias` [1],
`layer_final.weight` [2, 3], `layer_final.bias` [2]; trained with the "percentile" bins
below and the `vitc` NLI model, so pair it with that NLI model for the published
behaviour), or a JSON file with the same keys plus optional `bins` and `n_rows`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from moeprune.errors import UserError

# Bin edges the published weights were trained with (a fact of that model, not a tuning choice here).
PERCENTILE_BINS = (
    0.0,
    0.01,
    0.02,
    0.03,
    0.04,
    0.07,
    0.13,
    0.37,
    0.90,
    0.91,
    0.92,
    0.93,
    0.94,
    0.95,
    0.955,
    0.96,
    0.965,
    0.97,
    0.975,
    0.98,
    0.985,
    0.99,
    0.995,
    1.0,
)
DEFAULT_ROWS = 10
_KEYS = ("mlp.weight", "mlp.bias", "layer_final.weight", "layer_final.bias")


def histogram(values: list[float], edges: tuple[float, ...]) -> list[int]:
    """Counts per bin [edges[i], edges[i+1]); the last bin is closed on the right (numpy's convention)."""
    counts = [0] * (len(edges) - 1)
    for value in values:
        if value < edges[0] or value > edges[-1]:
            continue
        for i in range(len(counts)):
            if value < edges[i + 1] or i == len(counts) - 1:
                counts[i] += 1
                break
    return counts


@dataclass(frozen=True)
class ConvWeights:
    row_weight: list[float]  # w, one per bin
    row_bias: float  # b
    final_weight: list[list[float]]  # 2 x 3
    final_bias: list[float]  # 2
    bins: tuple[float, ...] = PERCENTILE_BINS
    n_rows: int = DEFAULT_ROWS

    @classmethod
    def load(cls, path: str | Path) -> ConvWeights:
        path = Path(path)
        if not path.is_file():
            raise UserError(
                f"SummaC-Conv weights {path} do not exist; pass a local weights file (the published "
                "summac_conv_vitc_sent_perc_e.bin or a JSON file with mlp.*/layer_final.* keys)",
                param="summac_conv_weights",
            )
        if path.suffix == ".json":
            try:
                raw = json.loads(path.read_text(encoding="utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise UserError(f"{path}: not valid JSON ({exc})", param="summac_conv_weights") from None
        else:
            raw = _torch_state(path)
        return cls.from_mapping(raw, str(path))

    @classmethod
    def from_mapping(cls, raw: dict, where: str) -> ConvWeights:
        missing = [key for key in _KEYS if key not in raw]
        if missing:
            raise UserError(f"{where}: SummaC-Conv weights lack {', '.join(missing)}", param="summac_conv_weights")
        bins = tuple(float(b) for b in raw.get("bins", PERCENTILE_BINS))
        row_weight = _flat(raw["mlp.weight"])
        final = [_flat(row) for row in raw["layer_final.weight"]]
        if len(row_weight) != len(bins) - 1 or len(final) != 2 or any(len(row) != 3 for row in final):
            raise UserError(
                f"{where}: SummaC-Conv weights have shapes mlp.weight [1, {len(row_weight)}] and "
                f"layer_final.weight [{len(final)}, ...]; expected [1, {len(bins) - 1}] (one per bin) "
                "and [2, 3]",
                param="summac_conv_weights",
            )
        return cls(
            row_weight,
            float(_flat(raw["mlp.bias"])[0]),
            final,
            _flat(raw["layer_final.bias"]),
            bins,
            int(raw.get("n_rows", DEFAULT_ROWS)),
        )

    def score(self, entail_by_sentence: list[list[float]]) -> float:
        """Probability of "consistent" from the entailment columns, one list per summary sentence."""
        rows = [histogram(column, self.bins) for column in entail_by_sentence[: self.n_rows]]
        rows = [row for row in rows if any(row)]
        if rows:
            reads = [sum(w * h for w, h in zip(self.row_weight, row)) + self.row_bias for row in rows]
            mean = sum(reads) / len(reads)
        else:
            mean = 0.0
        logits = [sum(w * mean for w in weights) + bias for weights, bias in zip(self.final_weight, self.final_bias)]
        top = max(logits)
        exps = [math.exp(v - top) for v in logits]
        return exps[1] / sum(exps)


def _flat(value) -> list[float]:
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, (int, float)):
        return [float(value)]
    out = []
    for element in value:
        out += _flat(element) if isinstance(element, (list, tuple)) or hasattr(element, "tolist") else [float(element)]
    return out


def _torch_state(path: Path) -> dict:
    import torch

    try:
        # weights_only: a state dict of tensors, never arbitrary pickled objects.
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several unrelated types for a bad file
        raise UserError(
            f"{path}: not a readable torch state dict ({type(exc).__name__}: {exc}); pass the "
            "published .bin or a JSON weights file",
            param="summac_conv_weights",
        ) from None


def add_summac_conv(records: list[dict], scorer, weights: ConvWeights) -> None:
    """Set `faithfulness_conv` on each summary record (None for an empty summary)."""
    for record in records:
        image = scorer.image(record["source"], record["response"])
        record["faithfulness_conv"] = None if image is None else weights.score(image.entail)
