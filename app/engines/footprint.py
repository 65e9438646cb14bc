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
from moeprune.formats.manifest import MANIFEST_NAME, PruningManifest
from moeprune.formats.report_card import ReportCard


@dataclass(frozen=True)
class Footprint:
    weight_bytes: int | None  # None: a report card declares no weight bytes
    moe_layers: int | None = None
    experts_kept: int | float | None = None  # per MoE layer
    experts_total: int | None = None  # per MoE layer, before pruning
    bytes_saved: int | None = 0
    bytes_saved_ratio: float | None = 0.0
    source: str = "measured"  # or "declared": from a url: variant's manifest / report card, not read from weights

    @property
    def experts_kept_total(self) -> int | None:
        if self.experts_kept is None or self.moe_layers is None:
            return None
        return round(self.experts_kept * self.moe_layers)

    @property
    def experts_before_total(self) -> int | None:
        return None if self.experts_total is None or self.moe_layers is None else self.experts_total * self.moe_layers

    def describe(self) -> dict:
        """The JSON form `/v1/experiments` reports (same names as the report card's `pruning`)."""
        return {
            "weight_bytes": self.weight_bytes,
            "bytes_saved": self.bytes_saved,
            "bytes_saved_ratio": self.bytes_saved_ratio,
            "moe_layers": self.moe_layers,
            "experts_kept": self.experts_kept,
            "experts_total": self.experts_total,
            "experts_kept_total": self.experts_kept_total,
            "experts_before_total": self.experts_before_total,
            "source": self.source,
        }


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
        return Footprint(
            weight_bytes,
            manifest.moe_layers,
            manifest.experts_kept_per_layer,
            manifest.experts_per_layer_before,
            manifest.bytes_saved,
            manifest.bytes_saved_ratio,
        )
    per_layer = opened.family.num_experts(opened.config)
    base = _open(Path(base_checkpoint)) if base_checkpoint is not None and Path(base_checkpoint).is_dir() else None
    saved, ratio, before = 0, 0.0, per_layer
    if base is not None:
        base_bytes = base.totals()["bytes"]["total"]
        saved, ratio = base_bytes - weight_bytes, (base_bytes - weight_bytes) / base_bytes if base_bytes else 0.0
        before = base.family.num_experts(base.config)
    return Footprint(weight_bytes, layers, per_layer, before, saved, ratio)


def declared(field: str, manifest: Path | None, report_card: Path | None) -> Footprint | None:
    """What a `url:` variant's files say it weighs (source `declared`): its pruning manifest (weight bytes,
    experts, bytes saved), else its report card's `pruning` block (experts, bytes saved); None without either."""
    if manifest is not None:
        path = Path(manifest)
        if not path.is_file():
            raise UserError(
                f"{field}.manifest: {path} does not exist; give the {MANIFEST_NAME} that moeprune "
                "prune wrote next to the weights this engine serves"
            )
        loaded = PruningManifest.load(path.parent) if path.name == MANIFEST_NAME else None
        if loaded is None:
            raise UserError(
                f"{field}.manifest: {path} is not a {MANIFEST_NAME}; give the {MANIFEST_NAME} that moeprune prune wrote"
            )
        return Footprint(
            loaded.bytes.after.total,
            loaded.moe_layers,
            loaded.experts_kept_per_layer,
            loaded.experts_per_layer_before,
            loaded.bytes_saved,
            loaded.bytes_saved_ratio,
            "declared",
        )
    if report_card is None:
        return None
    pruning = ReportCard.load(report_card).pruning
    if pruning is None or pruning.experts_total is None or pruning.experts_before_total is None:
        return None
    layers = pruning.experts_before_total // pruning.experts_total if pruning.experts_total else None
    return Footprint(None, layers, pruning.experts_kept, pruning.experts_total, pruning.bytes_saved, None, "declared")
