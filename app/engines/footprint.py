"""What a variant's checkpoint weighs: weight bytes, experts per MoE layer, bytes saved against its base.

Everything comes from the one checkpoint reader (`moeprune.formats.checkpoint`: safetensors
headers, the family descriptor's MoE layers) and the one manifest model
(`moeprune.formats.manifest.PruningManifest`), so these numbers are the ones
`moeprune inspect` prints. Expert counts are per MoE layer (`experts_kept`,
`experts_total`, as in the report card); totals over the model are named as
totals (`experts_kept_total`, `experts_before_total`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from moeprune.errors import UserError
from moeprune.formats.checkpoint import Checkpoint
from moeprune.formats.manifest import PruningManifest


@dataclass(frozen=True)
class Footprint:
    weight_bytes: int
    moe_layers: int | None = None
    experts_kept: int | float | None = None  # per MoE layer
    experts_total: int | None = None  # per MoE layer, before pruning
    bytes_saved: int = 0
    bytes_saved_ratio: float = 0.0

    @property
    def experts_kept_total(self) -> int | None:
        return None if self.experts_kept is None else round(self.experts_kept * self.moe_layers)

    @property
    def experts_before_total(self) -> int | None:
        return None if self.experts_total is None else self.experts_total * self.moe_layers

    def describe(self) -> dict:
        """The JSON form `/v1/experiments` reports (same names as the report card's `pruning`)."""
        return {"weight_bytes": self.weight_bytes, "bytes_saved": self.bytes_saved,
                "bytes_saved_ratio": self.bytes_saved_ratio, "moe_layers": self.moe_layers,
                "experts_kept": self.experts_kept, "experts_total": self.experts_total,
                "experts_kept_total": self.experts_kept_total, "experts_before_total": self.experts_before_total}


def _open(checkpoint: Path) -> Checkpoint | None:
    """The checkpoint, or None when it is not one this project can read (weights stay unmeasured)."""
    try:
        return Checkpoint.open(checkpoint)
    except UserError:
        return None


def measure(checkpoint: str | Path, base_checkpoint: str | Path | None = None) -> Footprint | None:
    """The footprint of a local checkpoint dir, or None when it is not a local dir."""
    checkpoint = Path(checkpoint)
    if not checkpoint.is_dir():
        return None
    opened = _open(checkpoint)
    if opened is None:
        return None
    weight_bytes = opened.totals()["bytes"]["total"]
    layers = len(opened.expert_layers())
    manifest = PruningManifest.load(checkpoint)
    if manifest is not None:
        return Footprint(weight_bytes, manifest.moe_layers, manifest.experts_kept_per_layer,
                         manifest.experts_per_layer_before, manifest.bytes_saved, manifest.bytes_saved_ratio)
    per_layer = opened.family.num_experts(opened.config)
    base = _open(Path(base_checkpoint)) if base_checkpoint is not None and Path(base_checkpoint).is_dir() else None
    saved, ratio, before = 0, 0.0, per_layer
    if base is not None:
        base_bytes = base.totals()["bytes"]["total"]
        saved, ratio = base_bytes - weight_bytes, (base_bytes - weight_bytes) / base_bytes if base_bytes else 0.0
        before = base.family.num_experts(base.config)
    return Footprint(weight_bytes, layers, per_layer, before, saved, ratio)
