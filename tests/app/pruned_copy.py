"""A really pruned copy of the tiny Qwen3-MoE checkpoint for the gateway tests, by the project's writer."""

from __future__ import annotations

from pathlib import Path

from pruning.writer import write_pruned

# Experts kept per MoE layer (source numbering): half of the tiny model's 8.
KEPT = {0: [0, 2, 5, 7], 1: [1, 2, 3, 6]}


def make_pruned_copy(source: Path, out: Path) -> Path:
    provenance = {
        "method": "manual",
        "ratio": 0.5,
        "allocation": "uniform",
        "seed": 0,
        "mask_file": None,
        "calibration": None,
    }
    return write_pruned(source, out, KEPT, provenance)
