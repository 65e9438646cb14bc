"""`moeprune inspect DIR`: what an MoE checkpoint holds, and for a pruned one, what was removed."""

from __future__ import annotations

import json
from pathlib import Path

from moeprune.formats.checkpoint import Checkpoint
from moeprune.formats.expert_counts import format_counts, layer_counts
from moeprune.formats.manifest import PruningManifest


def configure(parser) -> None:
    parser.add_argument("dir", type=Path, help="a Hugging Face safetensors checkpoint directory")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")


def describe(model_dir: Path) -> dict:
    checkpoint = Checkpoint.open(model_dir)
    family, config = checkpoint.family, checkpoint.config
    n_group, topk_group = family.num_groups(config)
    totals = checkpoint.totals()
    info = {
        "path": str(model_dir),
        "family": family.model_type,
        "layers": family.num_layers(config),
        "moe_layers": checkpoint.expert_layers(),
        "experts_per_layer": family.num_experts(config),
        # Per MoE layer, from config.json (per_layer_config where layers differ; equal counts otherwise).
        "experts_by_layer": {str(layer): count for layer, count in layer_counts(family, config).items()},
        "architectures": config.get("architectures"),
        "top_k": family.top_k(config),
        "grouped_routing": {"n_group": n_group, "topk_group": topk_group} if n_group > 1 else None,
        "shards": [shard.path.name for shard in checkpoint.shards],
        "params": totals["params"],
        "bytes": totals["bytes"],
        "pruning": None,
    }
    manifest = PruningManifest.load(model_dir)
    if manifest is not None:
        info["pruning"] = {
            "method": manifest.method,
            "ratio": manifest.ratio,
            "allocation": manifest.allocation,
            "seed": manifest.seed,
            "mask_file": manifest.mask_file,
            "source": manifest.source.path,
            "experts_per_layer_before": manifest.experts_per_layer_before,
            "kept_experts": {str(layer): kept for layer, kept in manifest.kept_experts.items()},
            "experts_kept_total": manifest.experts_kept_total,
            "experts_before_total": manifest.experts_before_total,
            "bytes_saved": manifest.bytes_saved,
            "bytes_before": manifest.bytes.before.total,
            "tool": manifest.tool.model_dump(),
        }
    return info


def run(args) -> int:
    info = describe(args.dir)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(_as_text(info))
    return 0


def _as_text(info: dict) -> str:
    params, nbytes = info["params"], info["bytes"]
    lines = [
        f"checkpoint:        {info['path']}",
        f"family:            {info['family']}",
        f"decoder layers:    {info['layers']} (MoE layers: {_ranges(info['moe_layers'])})",
        _experts_line(info),
    ]
    if info["grouped_routing"]:
        groups = info["grouped_routing"]
        lines.append(f"grouped routing:   {groups['n_group']} groups, {groups['topk_group']} used per token")
    lines += [
        f"parameters:        {params['total']:,} total, {params['experts']:,} in experts "
        f"({_share(params['experts'], params['total'])})",
        f"weight bytes:      {_size(nbytes['total'])} total, {_size(nbytes['experts'])} in experts "
        f"({len(info['shards'])} shard{'s' * (len(info['shards']) != 1)})",
    ]
    pruning = info["pruning"]
    if pruning:
        kept_sizes = sorted({len(v) for v in pruning["kept_experts"].values()})
        lines += [
            "pruned:            yes (pruning.json)",
            f"  method:          {pruning['method']} (ratio {pruning['ratio']}, allocation {pruning['allocation']}, "
            f"seed {pruning['seed']}{', mask ' + str(pruning['mask_file']) if pruning['mask_file'] else ''})",
            f"  experts:         {pruning['experts_per_layer_before']} -> {'/'.join(map(str, kept_sizes))} "
            f"per layer in {len(pruning['kept_experts'])} MoE layers"
            f"{' (' + _kept_by_layer(pruning) + ')' if len(kept_sizes) > 1 else ''}",
            f"  bytes saved:     {_size(pruning['bytes_saved'])} "
            f"({_share(pruning['bytes_saved'], pruning['bytes_before'])} of the source)",
            f"  source:          {pruning['source']}",
        ]
    else:
        lines.append("pruned:            no (no pruning.json)")
    return "\n".join(lines)


def _experts_line(info: dict) -> str:
    counts = {int(layer): count for layer, count in info["experts_by_layer"].items()}
    if len(set(counts.values())) <= 1:
        return f"experts per layer: {info['experts_per_layer']} routed, top-k {info['top_k']}"
    return (
        f"experts per layer: {min(counts.values())}-{max(counts.values())} routed, top-k {info['top_k']} "
        f"(per layer {format_counts(counts)}; architecture {', '.join(info['architectures'] or [])})"
    )


def _kept_by_layer(pruning: dict) -> str:
    return format_counts({int(layer): len(kept) for layer, kept in pruning["kept_experts"].items()})


def _ranges(layers: list[int]) -> str:
    if not layers:
        return "none"
    if layers == list(range(layers[0], layers[-1] + 1)) and len(layers) > 2:
        return f"{layers[0]}-{layers[-1]}"
    return ", ".join(map(str, layers))


def _share(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "n/a"


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{n} B"
        n /= 1024
    return f"{n:.1f} TiB"
