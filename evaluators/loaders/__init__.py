"""Loaders for the published data formats, one module each, in one registry.

Every loader is `load(path) -> list[MCItem | SummaryItem]` reading a local file
the user points to (nothing is downloaded). Malformed input raises UserError
naming the file and line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from evaluators.loaders import jsonl, medhalt, medmcqa, medqa, mmlu, pubmedqa
from moeprune.errors import UserError

LOADERS: dict[str, Callable[[Path], list]] = {
    "jsonl": jsonl.load_mc,
    "summaries": jsonl.load_summaries,
    "pubmedqa": pubmedqa.load,
    "medqa": medqa.load,
    "medmcqa": medmcqa.load,
    "mmlu": mmlu.load,
    "medhalt_fct": medhalt.load_fct,
    "medhalt_nota": medhalt.load_nota,
    "medhalt_fake": medhalt.load_fake,
}


def load_items(format_name: str, path: str | Path) -> list:
    if format_name not in LOADERS:
        raise UserError(f"unknown data format {format_name!r}; valid formats: {', '.join(sorted(LOADERS))}")
    path = Path(path)
    if not path.is_file():
        raise UserError(f"data file {path} does not exist; check the path")
    items = LOADERS[format_name](path)
    if not items:
        raise UserError(f"data file {path} holds no items")
    return items
