"""A really pruned copy of the tiny Qwen3-MoE checkpoint, for the gateway tests.

Uses the project's writer (`pruning.writer.write_pruned`) when it is importable;
until then a small stand-in drops the same experts and router rows itself and
writes a `pruning.json` with the fields the gateway reads (docs/contracts.md).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

# Experts kept per MoE layer (source numbering): half of the tiny model's 8.
KEPT = {0: [0, 2, 5, 7], 1: [1, 2, 3, 6]}


def make_pruned_copy(source: Path, out: Path) -> Path:
    try:
        from pruning.writer import write_pruned
    except ImportError:
        return _prune_by_hand(source, out)
    provenance = {"method": "manual", "ratio": 0.5, "allocation": "uniform", "seed": 0, "mask_file": None,
                  "calibration": None}
    return write_pruned(source, out, KEPT, provenance)


def _prune_by_hand(source: Path, out: Path) -> Path:
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(source / "model.safetensors"))
    kept_tensors = {}
    for name, tensor in tensors.items():
        parts = name.split(".")
        if ".mlp.experts." in name:
            layer, expert = int(parts[2]), int(parts[5])
            if expert not in KEPT[layer]:
                continue
            parts[5] = str(KEPT[layer].index(expert))
            kept_tensors[".".join(parts)] = tensor
        elif name.endswith(".mlp.gate.weight"):
            kept_tensors[name] = tensor[KEPT[int(parts[2])]].contiguous()
        else:
            kept_tensors[name] = tensor
    out.mkdir(parents=True)
    for item in source.iterdir():
        if item.name not in ("model.safetensors", "config.json"):
            shutil.copy(item, out / item.name)
    save_file(kept_tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
    config = json.loads((source / "config.json").read_text())
    config["num_local_experts"] = 4
    (out / "config.json").write_text(json.dumps(config, indent=2))

    def weight_bytes(named):
        return sum(t.numel() * t.element_size() for t in named.values())

    def expert_bytes(named):
        return sum(t.numel() * t.element_size() for n, t in named.items() if ".mlp.experts." in n)

    manifest = {
        "schema_version": 1, "family": "qwen3_moe", "method": "manual", "ratio": 0.5,
        "experts_per_layer_before": 8, "kept_experts": {str(k): v for k, v in KEPT.items()},
        "bytes": {"before": {"total": weight_bytes(tensors), "experts": expert_bytes(tensors)},
                  "after": {"total": weight_bytes(kept_tensors), "experts": expert_bytes(kept_tensors)}},
    }
    (out / "pruning.json").write_text(json.dumps(manifest, indent=2))
    return out
