"""BERTScore precision, recall and F1 with a local encoder (Zhang et al., 2020; no download).

Each text is encoded once; special tokens are dropped; every token embedding (from
hidden layer `layer`, default the last) is L2-normalised. With S the cosine matrix
between candidate tokens (rows) and reference tokens (columns):

    P = mean over candidate tokens of the row maximum of S
    R = mean over reference tokens of the column maximum of S
    F = 2PR / (P + R)

Plain greedy matching as the paper's default: no idf weighting and no baseline
rescaling (rescaled values need the authors' per-model baseline files; raw values are
comparable between variants scored by the same encoder, which is what recovery needs).
"""

from __future__ import annotations

from pathlib import Path

from moeprune.errors import UserError


def greedy_match(candidate: list[list[float]], reference: list[list[float]]) -> tuple[float, float, float]:
    """(P, R, F) from already-normalised token embeddings (rows are tokens)."""
    if not candidate or not reference:
        return 0.0, 0.0, 0.0
    sims = [[sum(a * b for a, b in zip(c, r)) for r in reference] for c in candidate]
    precision = sum(max(row) for row in sims) / len(candidate)
    recall = sum(max(sims[i][j] for i in range(len(candidate))) for j in range(len(reference))) / len(reference)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return precision, recall, f1


class BertScorer:
    """A local transformers encoder directory (config.json + weights + tokenizer)."""

    def __init__(self, model_path: str | Path, layer: int | None = None, max_length: int = 510):
        import torch
        from transformers import AutoModel, AutoTokenizer

        path = Path(model_path)
        if not (path / "config.json").is_file():
            raise UserError(
                f"bertscore_model {path} is not a local model directory (no config.json)", param="bertscore_model"
            )
        self.torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(str(path))
        self.model = AutoModel.from_pretrained(str(path)).eval()
        layers = self.model.config.num_hidden_layers
        if layer is not None and not 1 <= layer <= layers:
            raise UserError(f"bertscore layer {layer} is outside this encoder's 1..{layers}", param="bertscore_layer")
        self.layer = layer or layers
        self.max_length = max_length

    def embed(self, text: str):
        """Normalised embeddings of the text's non-special tokens: a [tokens, hidden] tensor."""
        torch = self.torch
        encoded = self.tokenizer(
            text, truncation=True, max_length=self.max_length, return_tensors="pt", return_special_tokens_mask=True
        )
        special = encoded.pop("special_tokens_mask")[0].bool()
        if encoded["input_ids"].shape[1] == 0:
            return torch.zeros(0, self.model.config.hidden_size)
        with torch.no_grad():
            states = self.model(**encoded, output_hidden_states=True).hidden_states[self.layer][0]
        states = states[~special]
        return torch.nn.functional.normalize(states.float(), dim=-1)

    def score(self, candidate: str, reference: str) -> tuple[float, float, float] | None:
        """(P, R, F); None when either text has no tokens."""
        cand, ref = self.embed(candidate or ""), self.embed(reference or "")
        if cand.shape[0] == 0 or ref.shape[0] == 0:
            return None
        sims = cand @ ref.T
        precision = sims.max(dim=1).values.mean().item()
        recall = sims.max(dim=0).values.mean().item()
        f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
        return precision, recall, f1


def add_bertscore(records: list[dict], scorer: BertScorer) -> None:
    """Set `bertscore` = [P, R, F] against the reference on each summary record (None when empty)."""
    for record in records:
        scored = scorer.score(record["response"], record["reference"])
        record["bertscore"] = list(scored) if scored else None
