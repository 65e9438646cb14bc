"""Loaders for the published data formats, one module each, in one registry.

Every loader is `load(path, strict=False, **options) -> LoadedItems` (a list of MCItem | SummaryItem |
GenItem with `.skipped` rows) reading a local file or directory the user points to (nothing is
downloaded). A row it cannot interpret is skipped with its line and reason (counted in the card);
`strict=True` raises it instead. A file that cannot be read at all is a UserError naming it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from evaluators.loaders import jsonl, medhalt, medinst, medmcqa, medqa, mmlu, pubmedqa, summaries
from evaluators.loaders.common import LoadedItems, skipped_summary  # noqa: F401  (re-exported)
from moeprune.errors import UserError

LOADERS: dict[str, Callable[..., LoadedItems]] = {
    "jsonl": jsonl.load_mc,
    "open_jsonl": jsonl.load_open,
    "summaries": jsonl.load_summaries,
    "pubmedqa": pubmedqa.load,
    "medqa": medqa.load,
    "medmcqa": medmcqa.load,
    "mmlu": mmlu.load,
    "medhalt_fct": medhalt.load_fct,
    "medhalt_nota": medhalt.load_nota,
    "medhalt_fake": medhalt.load_fake,
    "medhalt_reasoning": medhalt.load_reasoning,
    "medhalt_ir": medhalt.load_ir,
    "medinst": medinst.load,
    "rct": summaries.load_rct,
    "multi_news_plus": summaries.load_multi_news_plus,
    "multi_xscience": summaries.load_multi_xscience,
}

# What kind of item each loader yields (evaluators.items): how a task is prompted and scored.
LOADER_KINDS: dict[str, str] = {
    **{name: "multiple_choice" for name in LOADERS},
    "summaries": "summarisation",
    "rct": "summarisation",
    "multi_news_plus": "summarisation",
    "multi_xscience": "summarisation",
    "medhalt_reasoning": "generation",
    "medhalt_ir": "generation",
    "medinst": "generation",
    "open_jsonl": "generation",
}

DIRECTORY_LOADERS = ("mmlu", "rct", "multi_news_plus")  # their path may be a directory


def load_items(format_name: str, path: str | Path, strict: bool = False, **options) -> LoadedItems:
    if format_name not in LOADERS:
        raise UserError(f"unknown data format {format_name!r}; valid formats: {', '.join(sorted(LOADERS))}")
    path = Path(path)
    if not (path.is_file() or (format_name in DIRECTORY_LOADERS and path.is_dir())):
        raise UserError(f"data file {path} does not exist; check the path")
    items = LOADERS[format_name](path, strict=strict, **options)
    if not items:
        reasons = "; ".join(
            f"{reason} ({entry['count']}x)" for reason, entry in list(skipped_summary(items.skipped).items())[:3]
        )
        raise UserError(f"data file {path} holds no items{f': every row was skipped: {reasons}' if reasons else ''}")
    return items
