"""A contract-complete pruning.json for tests that need a manifest without running the pruner."""

from __future__ import annotations

import json
from pathlib import Path


def manifest_dict(
    kept: dict[int, list[int]],
    experts_before: int = 8,
    bytes_before: int = 1000,
    bytes_after: int = 600,
    method: str = "reap",
    ratio: float = 0.5,
) -> dict:
    return {
        "schema_version": 1,
        "tool": {"name": "moe-prune-serve", "version": "test"},
        "family": "qwen3_moe",
        "source": {"path": "/src", "config_sha256": "0" * 64, "files": {"model.safetensors": "1" * 64}},
        "method": method,
        "ratio": ratio,
        "allocation": "uniform",
        "seed": 0,
        "mask_file": None,
        "experts_per_layer_before": experts_before,
        "kept_experts": {str(layer): experts for layer, experts in kept.items()},
        "calibration": None,
        "params": {"before": {"total": 500, "experts": 400}, "after": {"total": 300, "experts": 200}},
        "bytes": {"before": {"total": bytes_before, "experts": 800}, "after": {"total": bytes_after, "experts": 400}},
        "files": {"config.json": "2" * 64},
    }


def write_manifest(model_dir: Path, kept: dict[int, list[int]], **fields) -> Path:
    path = Path(model_dir) / "pruning.json"
    path.write_text(json.dumps(manifest_dict(kept, **fields)))
    return path
