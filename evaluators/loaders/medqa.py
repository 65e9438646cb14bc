"""MedQA (USMLE) JSON lines: `{"question", "options": {"A": ...}, "answer_idx": "C", ...}`."""

from __future__ import annotations

from pathlib import Path

from evaluators.items import MCItem
from evaluators.loaders.common import json_lines, letter_answer, malformed, require


def load(path: Path) -> list[MCItem]:
    items = []
    for line, record in json_lines(path):
        require(record, ("question", "options", "answer_idx"), path, line)
        if not isinstance(record["options"], dict):
            raise malformed(path, line, "options must be an object {\"A\": text, ...}")
        options = {str(k).upper(): str(v) for k, v in sorted(record["options"].items())}
        items.append(MCItem(id=str(record.get("id", f"medqa-{line}")), question=str(record["question"]),
                            options=options, answer=letter_answer(record["answer_idx"], options, path, line),
                            domain="biomedical"))
    return items
