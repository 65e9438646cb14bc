"""`pruning.json` (what was removed, from what, and the hash of every file) and `expert_mask.json`.

The schema is fixed by docs/contracts.md; `verify` re-hashes a directory
against it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pruning
from pruning.checkpoint import Checkpoint
from pruning.errors import UserError
from pruning.hashing import sha256_file, sha256_tree

MANIFEST_NAME = "pruning.json"
MASK_NAME = "expert_mask.json"
SCHEMA_VERSION = 1
_PROVENANCE_KEYS = ("method", "ratio", "allocation", "seed", "mask_file")


def mask_rows(kept: dict[int, list[int]], ranked: dict | None = None) -> list[list[int]]:
    """The study's mask format: one row per MoE layer (layer order), kept experts best first if known."""
    rows = []
    for layer in sorted(kept):
        row = sorted(kept[layer])
        if ranked is not None:
            order = [int(i) for i in ranked.get(layer, ranked.get(str(layer), []))]
            if sorted(order) != row:
                raise UserError(f"layer {layer}: ranked experts {order} are not the kept experts {row}")
            row = order
        rows.append(row)
    return rows


def build_manifest(source: Checkpoint, after: Checkpoint, kept: dict[int, list[int]], provenance: dict,
                   source_hashes: dict[str, str], written_hashes: dict[str, str] | None = None) -> dict:
    before_totals, after_totals = source.totals(), after.totals()
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "tool": {"name": "moe-prune-serve", "version": pruning.__version__},
        "family": source.family.model_type,
        "source": {
            "path": str(source.path.resolve()),
            "config_sha256": sha256_file(source.path / "config.json"),
            "files": dict(sorted(source_hashes.items())),
        },
    }
    manifest.update({key: provenance.get(key) for key in _PROVENANCE_KEYS})
    manifest.update({
        "experts_per_layer_before": source.family.num_experts(source.config),
        "kept_experts": {str(layer): sorted(kept[layer]) for layer in sorted(kept)},
        "calibration": provenance.get("calibration"),
        "params": {"before": before_totals["params"], "after": after_totals["params"]},
        "bytes": {"before": before_totals["bytes"], "after": after_totals["bytes"]},
        "files": sha256_tree(after.path, exclude=(MANIFEST_NAME,), known=written_hashes),
    })
    return manifest


def read_manifest(model_dir: str | Path) -> dict | None:
    """The directory's pruning.json, or None for an unpruned checkpoint."""
    path = Path(model_dir) / MANIFEST_NAME
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        raise UserError(f"{path}: not a pruning manifest (no 'files' mapping)")
    return manifest


def verify(model_dir: str | Path) -> list[str]:
    """Every difference between the directory and its pruning.json: changed, missing or extra files."""
    model_dir = Path(model_dir)
    manifest = read_manifest(model_dir)
    if manifest is None:
        raise UserError(f"{model_dir}: no {MANIFEST_NAME}; only pruned checkpoints can be verified")
    recorded = manifest["files"]
    actual = sha256_tree(model_dir, exclude=(MANIFEST_NAME,))
    problems = [f"missing: {name}" for name in sorted(set(recorded) - set(actual))]
    problems += [f"extra: {name}" for name in sorted(set(actual) - set(recorded))]
    problems += [
        f"changed: {name} (sha256 {actual[name][:12]}..., recorded {recorded[name][:12]}...)"
        for name in sorted(set(recorded) & set(actual))
        if actual[name] != recorded[name]
    ]
    return problems
