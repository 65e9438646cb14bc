"""What a variant's checkpoint weighs: weight bytes, experts kept, bytes saved against its base.

Numbers come from the checkpoint itself: `pruning.json` (written by the pruner,
see docs/contracts.md) when present, else the safetensors headers (the bytes a
server loads) and config.json (the expert count).
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path

from pruning.manifest import read_manifest

# Config keys that hold the routed-expert count, by family (see docs/contracts.md).
EXPERT_COUNT_KEYS = ("num_experts", "num_local_experts", "n_routed_experts")


@dataclass(frozen=True)
class Footprint:
    weight_bytes: int
    experts_kept: int | None = None
    experts_total: int | None = None
    bytes_saved: int = 0
    bytes_saved_ratio: float = 0.0


def safetensors_bytes(checkpoint: Path) -> int:
    """Sum of tensor data bytes over every safetensors file (read from headers only)."""
    total = 0
    for path in sorted(Path(checkpoint).glob("*.safetensors")):
        with open(path, "rb") as handle:
            (header_len,) = struct.unpack("<Q", handle.read(8))
            header = json.loads(handle.read(header_len))
        total += sum(end - start for key, meta in header.items() if key != "__metadata__"
                     for start, end in [meta["data_offsets"]])
    return total


def _config_experts(checkpoint: Path) -> int | None:
    try:
        config = json.loads((checkpoint / "config.json").read_text())
    except (OSError, ValueError):
        return None
    config = config.get("text_config", config)
    per_layer = next((config[key] for key in EXPERT_COUNT_KEYS if isinstance(config.get(key), int)), None)
    layers = config.get("num_hidden_layers")
    if per_layer is None or not isinstance(layers, int):
        return None
    return per_layer * layers


def measure(checkpoint: str | Path, base_checkpoint: str | Path | None = None) -> Footprint | None:
    """The footprint of a local checkpoint dir, or None when it is not a local dir."""
    checkpoint = Path(checkpoint)
    if not checkpoint.is_dir():
        return None
    weight_bytes = safetensors_bytes(checkpoint)
    manifest = read_manifest(checkpoint)
    if manifest is not None:
        before = manifest["bytes"]["before"]["total"]
        after = manifest["bytes"]["after"]["total"]
        per_layer_before = manifest["experts_per_layer_before"]
        kept = sum(len(experts) for experts in manifest["kept_experts"].values())
        total = per_layer_before * len(manifest["kept_experts"])
        saved = before - after
        return Footprint(weight_bytes, kept, total, saved, saved / before if before else 0.0)
    experts = _config_experts(checkpoint)
    saved, ratio = 0, 0.0
    if base_checkpoint is not None and Path(base_checkpoint).is_dir():
        base_bytes = safetensors_bytes(Path(base_checkpoint))
        saved = base_bytes - weight_bytes
        ratio = saved / base_bytes if base_bytes else 0.0
    return Footprint(weight_bytes, experts, experts, saved, ratio)
