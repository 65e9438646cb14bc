"""What each output shard holds: tensor names, shapes and the source byte ranges they come from.

Pruning never reorders bytes: kept experts are renumbered in ascending source
order, and the kept rows of a dim-0 tensor are ascending too, so every output
shard is a subsequence of its source shard. The plan lists that subsequence
as byte ranges; the writer then streams the source once, front to back.
"""

from __future__ import annotations

from dataclasses import dataclass

from moeprune.errors import UserError
from moeprune.formats.checkpoint import Checkpoint, Shard, TensorEntry


@dataclass(frozen=True)
class OutTensor:
    name: str
    dtype: str
    shape: tuple[int, ...]
    ranges: tuple[tuple[int, int], ...]  # absolute source byte ranges, ascending

    @property
    def nbytes(self) -> int:
        return sum(end - start for start, end in self.ranges)


@dataclass(frozen=True)
class ShardPlan:
    source: Shard
    tensors: tuple[OutTensor, ...]

    @property
    def name(self) -> str:
        return self.source.path.name


def plan_shards(checkpoint: Checkpoint, kept: dict[int, list[int]]) -> list[ShardPlan]:
    """One plan per source shard that keeps at least one tensor."""
    num_experts = checkpoint.family.num_experts(checkpoint.config)
    plans = []
    for shard in checkpoint.shards:
        tensors = [t for t in (_plan_tensor(checkpoint, entry, kept, num_experts) for entry in shard.tensors) if t]
        if tensors:
            plans.append(ShardPlan(shard, tuple(tensors)))
    return plans


def _plan_tensor(checkpoint: Checkpoint, entry: TensorEntry, kept: dict[int, list[int]], num_experts: int):
    family = checkpoint.family
    whole = ((entry.start, entry.end),)
    match = family.match_expert_tensor(entry.name)
    if match:
        layer, expert = int(match.group("layer")), int(match.group("expert"))
        keep = _kept_for(kept, layer, entry.name)
        if expert >= num_experts:
            raise UserError(f"{entry.name}: expert {expert} but the config has {num_experts} experts per layer")
        if expert not in keep:
            return None
        new_name = f"{match.group('prefix')}{keep.index(expert)}{match.group('suffix')}"
        return OutTensor(new_name, entry.dtype, entry.shape, whole)
    match = family.match_dim0_tensor(entry.name)
    if match:
        keep = _kept_for(kept, int(match.group("layer")), entry.name)
        if not entry.shape or entry.shape[0] != num_experts:
            raise UserError(
                f"{entry.name}: shape {list(entry.shape)} but dim 0 should be the expert count {num_experts}"
            )
        row = entry.nbytes // num_experts
        ranges = merge_ranges([(entry.start + i * row, entry.start + (i + 1) * row) for i in keep])
        return OutTensor(entry.name, entry.dtype, (len(keep), *entry.shape[1:]), tuple(ranges))
    return OutTensor(entry.name, entry.dtype, entry.shape, whole)


def _kept_for(kept: dict[int, list[int]], layer: int, name: str) -> list[int]:
    if layer not in kept:
        raise UserError(
            f"{name} is expert-indexed but layer {layer} has no kept-experts entry "
            f"(entries for layers {sorted(kept)}); give one entry per MoE layer"
        )
    return kept[layer]


def merge_ranges(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in ranges:
        if merged and merged[-1][1] == start:
            merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return merged
