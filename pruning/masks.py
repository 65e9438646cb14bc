"""Expert masks in the study's format: ``list[list[int]]``, kept experts per MoE layer, rank order.

Imported with ``--mask`` (no calibration needed) and exported next to every
pruned checkpoint as ``expert_mask.json`` (by the writer, from the ranked
lists the pipeline hands it).
"""

from __future__ import annotations

from pathlib import Path

from moeprune.errors import UserError
from moeprune.formats.jsonfile import read_json
from pruning.selection import Ranked, Routing


def read_mask(path: str | Path) -> list[list[int]]:
    path = Path(path)
    data = read_json(
        path, f"mask file {path} does not exist; pass an expert_mask.json (list of kept experts per MoE layer)"
    )
    if not (isinstance(data, list) and all(isinstance(row, list) for row in data)):
        raise UserError(f"{path}: a mask is a JSON list with one list of kept expert indices per MoE layer")
    for position, row in enumerate(data):
        if not all(isinstance(i, int) and not isinstance(i, bool) for i in row):
            raise UserError(f"{path}: MoE layer #{position}: expert indices must be integers")
    return data


def mask_to_ranked(mask: list[list[int]], moe_layers: list[int], routing: Routing, where: str = "mask") -> Ranked:
    """Map the mask's entries (in MoE-layer order) to decoder-layer indices, checking each entry."""
    if len(mask) != len(moe_layers):
        raise UserError(
            f"{where} has {len(mask)} layer entries but the model has {len(moe_layers)} MoE layers "
            f"(decoder layers {_span(moe_layers)}); was it made for another model?"
        )
    ranked = {}
    for position, (layer, kept) in enumerate(zip(moe_layers, mask)):
        label = f"{where}: MoE layer #{position} (decoder layer {layer})"
        outside = [i for i in kept if not 0 <= i < routing.num_experts]
        if outside:
            raise UserError(f"{label}: expert indices {outside} are outside 0..{routing.num_experts - 1}")
        duplicates = sorted({i for i in kept if kept.count(i) > 1})
        if duplicates:
            raise UserError(f"{label}: expert indices {duplicates} appear more than once")
        check_kept(kept, routing, label)
        ranked[layer] = list(kept)
    return ranked


def check_kept(kept: list[int], routing: Routing, label: str) -> None:
    """Refuse a layer's kept set the model cannot run with (numbers and the fix in the message)."""
    problem = routing.kept_count_problem(len(kept))
    if problem:
        raise UserError(f"{label}: {problem}")
    if routing.n_group:
        per_group = [0] * routing.n_group
        for expert in kept:
            per_group[routing.group_of(expert)] += 1
        if len(set(per_group)) > 1:
            raise UserError(
                f"{label} keeps {per_group} experts from the {routing.n_group} routing groups; grouped routing "
                "needs the same number from every group"
            )


def ranked_to_mask(ranked: Ranked) -> list[list[int]]:
    return [list(ranked[layer]) for layer in sorted(ranked)]


def _span(layers: list[int]) -> str:
    if not layers:
        return "none"
    return f"{layers[0]}..{layers[-1]}" if layers == list(range(layers[0], layers[-1] + 1)) else str(layers)
