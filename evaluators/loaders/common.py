"""Shared reading helpers: JSON lines, JSON documents and CSV rows, with line numbers in every problem.

Published files are messier than their documentation, so a row a loader cannot interpret is skipped with
its line number and reason (`collect`), counted in the card, and loading goes on; `strict=True` (the
`--strict` flag) raises the first problem instead. A file that cannot be read at all (missing, not JSON,
a broken CSV) is always an error.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from moeprune.errors import UserError


class BadRow(UserError):
    """One row a loader cannot interpret: where it is and why (skipped unless loading is strict)."""

    def __init__(self, path: Path, line: int | None, reason: str):
        where = f"{path}, line {line}" if line else str(path)
        super().__init__(f"malformed data file {where}: {reason}")
        self.line = line
        self.reason = reason


def malformed(path: Path, line: int | None, what: str) -> BadRow:
    return BadRow(path, line, what)


@dataclass(frozen=True)
class Skipped:
    line: int | None
    reason: str


class LoadedItems(list):
    """The items of a data file, plus the rows that were skipped (`skipped`, in file order)."""

    def __init__(self, items: Iterable = (), skipped: Iterable[Skipped] = ()):
        super().__init__(items)
        self.skipped = list(skipped)


def skipped_summary(skipped: list[Skipped], lines_per_reason: int = 10) -> dict:
    """Per reason: how many rows and the first few line numbers, for the report card."""
    counts = Counter(s.reason for s in skipped)
    return {
        reason: {"count": count, "lines": [s.line for s in skipped if s.reason == reason and s.line][:lines_per_reason]}
        for reason, count in counts.most_common()
    }


def collect(path: Path, rows: Iterable[tuple[int | None, object]], parse: Callable, strict: bool) -> LoadedItems:
    """`parse(line, row)` for every row -> LoadedItems; a BadRow (raised, or yielded as the row) is skipped."""
    items, skipped = [], []
    for line, row in rows:
        try:
            if isinstance(row, BadRow):
                raise row
            item = parse(line, row)
        except BadRow as problem:
            if strict:
                raise
            skipped.append(Skipped(problem.line if problem.line is not None else line, problem.reason))
            continue
        if item is not None:
            items.append(item)
    return LoadedItems(items, skipped)


def json_lines(path: Path) -> Iterator[tuple[int, dict | BadRow]]:
    """(line number, object) for every non-blank line; a line that is not a JSON object comes as a BadRow."""
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                yield number, malformed(path, number, f"not valid JSON ({exc.msg})")
                continue
            yield (
                number,
                (record if isinstance(record, dict) else malformed(path, number, "expected one JSON object per line")),
            )


def json_document(path: Path):
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except json.JSONDecodeError as exc:
        raise malformed(path, exc.lineno, f"not valid JSON ({exc.msg})") from None


def _is_json_lines(path: Path) -> bool:
    """A `.json` file whose first line is a whole JSON object and that has more lines is JSON lines."""
    with open(path, encoding="utf-8") as handle:
        first = handle.readline().strip()
        rest = handle.readline().strip()
    if not (first.startswith("{") and rest):
        return False
    try:
        return isinstance(json.loads(first), dict)
    except json.JSONDecodeError:
        return False


def json_records(path: Path) -> Iterator[tuple[int | None, dict | BadRow]]:
    """Records of a JSON-lines file (`.jsonl`) or a JSON list (anything else); list entries have no line."""
    if path.suffix == ".jsonl" or _is_json_lines(path):
        yield from json_lines(path)  # MedMCQA publishes JSON lines as dev.json
        return
    data = json_document(path)
    if isinstance(data, dict) and isinstance(data.get("data"), list):
        data = data["data"]  # {"data": [...]}: the datasets library's JSON export
    if not isinstance(data, list):
        raise malformed(path, 1, "expected a JSON list of records (or JSON lines in a .jsonl file)")
    for number, record in enumerate(data, start=1):
        yield None, (record if isinstance(record, dict) else malformed(path, None, f"record {number} is not an object"))


def csv_rows(path: Path, header: bool = True) -> Iterator[tuple[int, dict | list]]:
    """(line number, row) for every CSV row: dicts keyed by the header, or plain lists."""
    csv.field_size_limit(1 << 26)  # published abstracts exceed csv's 128 KiB default field size
    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle) if header else csv.reader(handle)
        try:
            for row in reader:
                yield reader.line_num, row
        except csv.Error as exc:
            raise malformed(path, reader.line_num, f"CSV error ({exc})") from None


def table_records(path: Path) -> Iterator[tuple[int | None, dict | BadRow]]:
    """Rows of a CSV (with header), JSON-lines or JSON-list file, chosen by the suffix."""
    if path.suffix == ".csv":
        yield from csv_rows(path)
    else:
        yield from json_records(path)


def require(record: dict, keys: tuple[str, ...], path: Path, line: int | None) -> None:
    missing = [key for key in keys if key not in record or record[key] in (None, "")]
    if missing:
        raise malformed(path, line, f"missing field(s) {', '.join(missing)}")


def letter_answer(answer, options: dict[str, str], path: Path, line: int | None) -> str:
    """An answer given as a letter, a 0-based index, or the option's text -> its letter."""
    if isinstance(answer, bool):
        raise malformed(path, line, f"answer {answer!r} is not a letter, index or option text")
    if isinstance(answer, int):
        letters = list(options)
        if 0 <= answer < len(letters):
            return letters[answer]
    elif isinstance(answer, str):
        text = answer.strip()
        if text.upper() in options:
            return text.upper()
        for letter, option in options.items():
            if option.strip().lower() == text.lower():
                return letter
    raise malformed(path, line, f"answer {answer!r} matches none of the options {', '.join(options)}")
