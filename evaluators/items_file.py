"""items.jsonl, the run's every answer for inspection: the one place that writes its lines and reads them back.

A line is a record's JSON form (evaluators/records.py) with the summary's `source` left out (the data
file has it) and NaN written as null. Reading back needs each task's kind, which the report card beside
the file names (`tasks[name].kind`); the kind's registered record type parses the line.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from evaluators.records import ItemRecord, not_answered_type
from evaluators.task_kinds import task_kind
from moeprune.errors import UserError
from moeprune.formats.jsonfile import json_lines, read_json

ITEMS_NAME = "items.jsonl"
CARD_NAME = "report_card.json"


def _clean(value):
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def item_line(record: dict | ItemRecord) -> str:
    """The items.jsonl line of one record (typed, or its JSON form with keys added later), newline included."""
    data = record.to_json() if isinstance(record, ItemRecord) else record
    return json.dumps(_clean({k: v for k, v in data.items() if k != "source"})) + "\n"


def write_items(path: Path, records: list) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        for record in records:
            handle.write(item_line(record))


def record_from_json(data: dict, kind: str) -> ItemRecord:
    """The typed record of one line's object, for a task of kind `kind` (failed and skipped items: any kind)."""
    not_answered = not_answered_type(data)
    if not_answered is not None:
        return not_answered.from_json(data)
    return task_kind(kind).record_type.from_json(data)


def read_items(out_dir: str | Path) -> list[ItemRecord]:
    """The typed records of a run's items.jsonl, each parsed by its task's kind as the card beside it says."""
    out_dir = Path(out_dir)
    card = read_json(out_dir / CARD_NAME, f"{out_dir} has no {CARD_NAME}; give the output directory of a run")
    kinds = {name: task.get("kind") for name, task in card.get("tasks", {}).items()}

    def bad(line: int, what: str) -> UserError:
        return UserError(f"{out_dir / ITEMS_NAME}, line {line}: {what}")

    records = []
    for number, data in json_lines(out_dir / ITEMS_NAME, bad):
        if data.get("task") not in kinds:
            raise bad(number, f"task {data.get('task')!r} is not in {CARD_NAME}; the two files are from different runs")
        try:
            records.append(record_from_json(data, kinds[data["task"]]))
        except KeyError as exc:
            raise bad(number, f"no {exc} field, which a {kinds[data['task']]} record has") from None
    return records
