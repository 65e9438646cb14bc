"""`pruning.json` (what was removed, from what, and the hash of every file) and `expert_mask.json`.

`PruningManifest` is the one definition of `pruning.json` (docs/contracts.md
points here): the writer builds it, and every reader (inspect, verify, eval,
the gateway's memory gauges, the demo) loads it through `PruningManifest.load`,
so a malformed file fails the same way everywhere.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from moeprune.errors import UserError, validation_problems
from moeprune.formats.checkpoint import Checkpoint
from moeprune.formats.hashing import sha256_file, sha256_tree
from moeprune.version import package_version

MANIFEST_NAME = "pruning.json"
MASK_NAME = "expert_mask.json"
SCHEMA_VERSION: Final = 1
_PROVENANCE_KEYS = ("method", "ratio", "allocation", "seed", "mask_file")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Tool(_Strict):
    name: str
    version: str


class SourceInfo(_Strict):
    path: str
    config_sha256: str
    files: dict[str, str]


class Totals(_Strict):
    total: int = Field(ge=0)
    experts: int = Field(ge=0)


class BeforeAfter(_Strict):
    before: Totals
    after: Totals


class PruningManifest(_Strict):
    schema_version: Literal[1]
    tool: Tool
    family: str
    source: SourceInfo
    method: str | None = None
    ratio: float | None = None
    allocation: str | None = None
    seed: int | None = None
    mask_file: str | None = None
    experts_per_layer_before: int = Field(ge=1)
    kept_experts: dict[int, list[int]] = Field(min_length=1, description="MoE layer -> kept (source numbering)")
    calibration: dict | None = None
    # How the observation pass ran (mode stream/whole, dtype, device, EAN rule, tokens per layer); written
    # only for method-based prunes, so mask-based manifests keep exactly the contract's keys.
    observation: dict | None = Field(default=None, exclude_if=lambda value: value is None)
    # Set by dequantize-on-write ({"from": "mxfp4", "to": <dtype>}): the experts are not the source's bytes.
    # Absent otherwise, so other manifests keep exactly the contract's keys.
    dequantized: dict | None = Field(default=None, exclude_if=lambda value: value is None)
    params: BeforeAfter
    bytes: BeforeAfter
    files: dict[str, str]

    # Expert counts, defined once for every reader: per MoE layer, and totals named as totals.
    @property
    def moe_layers(self) -> int:
        return len(self.kept_experts)

    @property
    def experts_kept_per_layer(self) -> int | float:
        """Kept experts per MoE layer (the mean when layers differ; `experts_kept_by_layer` has each)."""
        counts = {len(kept) for kept in self.kept_experts.values()}
        return counts.pop() if len(counts) == 1 else sum(map(len, self.kept_experts.values())) / self.moe_layers

    @property
    def experts_kept_by_layer(self) -> dict[int, int]:
        """MoE layer -> experts it keeps (layers differ after allocation global or coverage)."""
        return {layer: len(kept) for layer, kept in sorted(self.kept_experts.items())}

    @property
    def experts_kept_total(self) -> int:
        return sum(len(kept) for kept in self.kept_experts.values())

    @property
    def experts_before_total(self) -> int:
        return self.experts_per_layer_before * self.moe_layers

    @property
    def bytes_saved(self) -> int:
        return self.bytes.before.total - self.bytes.after.total

    @property
    def bytes_saved_ratio(self) -> float:
        return self.bytes_saved / self.bytes.before.total if self.bytes.before.total else 0.0

    @classmethod
    def load(cls, model_dir: str | Path) -> PruningManifest | None:
        """The directory's pruning.json, or None for an unpruned checkpoint; a malformed one is a UserError."""
        path = Path(model_dir) / MANIFEST_NAME
        if not path.is_file():
            return None
        try:
            return cls.model_validate_json(path.read_bytes())
        except ValidationError as exc:
            raise UserError(
                f"{path}: not a valid pruning manifest: {validation_problems(exc)}; re-create it with moeprune prune"
            ) from None

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), indent=2) + "\n"


def build_manifest(
    source: Checkpoint,
    after: Checkpoint,
    kept: dict[int, list[int]],
    provenance: dict,
    source_hashes: dict[str, str],
    written_hashes: dict[str, str] | None = None,
) -> PruningManifest:
    before_totals, after_totals = source.totals(), after.totals()
    return PruningManifest(
        schema_version=SCHEMA_VERSION,
        tool=Tool(name="moe-prune-serve", version=package_version()),
        family=source.family.model_type,
        source=SourceInfo(
            path=str(source.path.resolve()),
            config_sha256=sha256_file(source.path / "config.json"),
            files=dict(sorted(source_hashes.items())),
        ),
        **{key: provenance.get(key) for key in _PROVENANCE_KEYS},
        experts_per_layer_before=source.family.num_experts(source.config),
        kept_experts={layer: sorted(kept[layer]) for layer in sorted(kept)},
        calibration=provenance.get("calibration"),
        observation=provenance.get("observation"),
        dequantized=provenance.get("dequantized"),
        params=BeforeAfter(before=before_totals["params"], after=after_totals["params"]),
        bytes=BeforeAfter(before=before_totals["bytes"], after=after_totals["bytes"]),
        files=sha256_tree(after.path, exclude=(MANIFEST_NAME,), known=written_hashes),
    )


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


def verify(model_dir: str | Path) -> list[str]:
    """Every difference between the directory and its pruning.json: changed, missing or extra files."""
    model_dir = Path(model_dir)
    manifest = PruningManifest.load(model_dir)
    if manifest is None:
        raise UserError(f"{model_dir}: no {MANIFEST_NAME}; only pruned checkpoints can be verified")
    recorded = manifest.files
    actual = sha256_tree(model_dir, exclude=(MANIFEST_NAME,))
    problems = [f"missing: {name}" for name in sorted(set(recorded) - set(actual))]
    problems += [f"extra: {name}" for name in sorted(set(actual) - set(recorded))]
    problems += [
        f"changed: {name} (sha256 {actual[name][:12]}..., recorded {recorded[name][:12]}...)"
        for name in sorted(set(recorded) & set(actual))
        if actual[name] != recorded[name]
    ]
    return problems
