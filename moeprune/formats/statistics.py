"""Per-expert statistics from one observation pass: what every scoring method needs.

Method-independent, so they are what `--scores-out` saves and `--scores-in`
reads back: any method and any ratio can be applied later without a new pass.
All sums are over calibration tokens of one MoE layer; g is the token's
top-k router weights renormalised to sum 1; E_i(x) the output of expert i.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from moeprune.errors import UserError
from moeprune.formats.jsonfile import read_json

SCHEMA = "moeprune-expert-statistics"
SCHEMA_VERSION = 1

# Per-expert vectors kept for every MoE layer.
VECTORS = (
    "counts",  # number of tokens routed to i
    "gate_sum",  # sum over routed tokens of g_i
    "reap_sum",  # sum over routed tokens of g_i * ||E_i(x)||
    "ean_sum",  # sum over the layer's first `ean_tokens` tokens of ||E_i(x)|| (every expert run)
    "easyep_sum",  # sum over routed tokens of s_t * g_i * ||E_i(x)||
)


@dataclass
class LayerStats:
    num_experts: int
    tokens: int = 0  # calibration tokens seen by this layer
    ean_tokens: int = 0  # tokens on which every expert was run (bounded)
    counts: list[float] = field(default_factory=list)
    gate_sum: list[float] = field(default_factory=list)
    reap_sum: list[float] = field(default_factory=list)
    ean_sum: list[float] = field(default_factory=list)
    easyep_sum: list[float] = field(default_factory=list)

    def __post_init__(self):
        for name in VECTORS:
            if not getattr(self, name):
                setattr(self, name, [0.0] * self.num_experts)
            elif len(getattr(self, name)) != self.num_experts:
                raise UserError(
                    f"statistics vector {name} has {len(getattr(self, name))} entries, expected {self.num_experts}"
                )


@dataclass
class ExpertStats:
    """Statistics for every MoE layer, keyed by decoder-layer index."""

    model_type: str
    num_experts: int
    top_k: int
    layers: dict[int, LayerStats]
    calibration: dict | None = None
    ean_max_tokens: int | None = None  # EAN rows per layer, at most (stream order); None: no cap
    source: dict | None = None
    ean_tokens_per_sample: int | None = None  # EAN on each sample's first N tokens; None: no per-sample rule

    @classmethod
    def empty(cls, model_type: str, num_experts: int, top_k: int, layer_ids, **meta) -> ExpertStats:
        return cls(model_type, num_experts, top_k, {i: LayerStats(num_experts) for i in layer_ids}, **meta)

    def ean_rule(self) -> dict:
        """Which tokens EAN ran every expert on, for pruning.json's calibration record."""
        return {
            "rule": "per-sample" if self.ean_tokens_per_sample is not None else "stream-prefix",
            "tokens_per_sample": self.ean_tokens_per_sample,
            "max_tokens_per_layer": self.ean_max_tokens,
        }

    def to_dict(self) -> dict:
        return {
            "schema": SCHEMA,
            "schema_version": SCHEMA_VERSION,
            "model_type": self.model_type,
            "num_experts": self.num_experts,
            "top_k": self.top_k,
            "source": self.source,
            "calibration": self.calibration,
            "ean_max_tokens": self.ean_max_tokens,
            "ean_tokens_per_sample": self.ean_tokens_per_sample,
            "layers": {
                str(index): {
                    "tokens": layer.tokens,
                    "ean_tokens": layer.ean_tokens,
                    **{name: getattr(layer, name) for name in VECTORS},
                }
                for index, layer in sorted(self.layers.items())
            },
        }

    @classmethod
    def from_dict(cls, data: dict, where: str = "statistics") -> ExpertStats:
        if not isinstance(data, dict) or data.get("schema") != SCHEMA:
            raise UserError(f"{where} is not a moeprune statistics file (write one with scores_out)", param="scores_in")
        if data.get("schema_version") != SCHEMA_VERSION:
            raise UserError(
                f"{where}: schema_version {data.get('schema_version')} is not {SCHEMA_VERSION}; re-run the pass"
            )
        try:
            num_experts = int(data["num_experts"])
            layers = {
                int(index): LayerStats(
                    num_experts,
                    int(layer["tokens"]),
                    int(layer["ean_tokens"]),
                    **{name: [float(v) for v in layer[name]] for name in VECTORS},
                )
                for index, layer in data["layers"].items()
            }
            return cls(
                str(data["model_type"]),
                num_experts,
                int(data["top_k"]),
                layers,
                data.get("calibration"),
                data.get("ean_max_tokens"),
                data.get("source"),
                # Absent in files written before the per-sample rule existed: they used none.
                data.get("ean_tokens_per_sample"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise UserError(
                f"{where} is incomplete or malformed ({exc!r}); write it again with scores_out", param="scores_in"
            ) from exc

    def save(self, path: str | Path, scores: dict | None = None) -> Path:
        """Write the statistics (and, for convenience, the scores of the method used) as JSON."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = self.to_dict()
        if scores is not None:
            data["scores"] = scores
        path.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path) -> ExpertStats:
        data = read_json(path, f"scores_in {path} does not exist; write it first with scores_out")
        return cls.from_dict(data, where=str(path))
