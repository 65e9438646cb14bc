"""MMLU subject CSVs: rows `question, A, B, C, D, answer` (the published files have no header).

A header row naming those columns is accepted and skipped.
"""

from __future__ import annotations

from pathlib import Path

from evaluators.items import MCItem
from evaluators.loaders.common import csv_rows, malformed


def load(path: Path) -> list[MCItem]:
    items = []
    for line, row in csv_rows(path, header=False):
        if not row or not any(cell.strip() for cell in row):
            continue
        if [cell.strip().lower() for cell in row[:6]] == ["question", "a", "b", "c", "d", "answer"]:
            continue
        if len(row) != 6:
            raise malformed(path, line, f"expected 6 columns (question, A, B, C, D, answer), got {len(row)}")
        question, *texts, answer = row
        answer = answer.strip().upper()
        if answer not in ("A", "B", "C", "D"):
            raise malformed(path, line, f"answer {row[5]!r} is not A, B, C or D")
        items.append(MCItem(id=f"{path.stem}-{line}", question=question,
                            options=dict(zip("ABCD", texts)), answer=answer))
    return items
