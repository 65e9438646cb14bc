"""Shared reading helpers: JSON lines and CSV rows with line numbers in every error."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Iterator

from moeprune.errors import UserError
from pruning.jsonfile import json_lines as read_json_lines


def malformed(path: Path, line: int | None, what: str) -> UserError:
    where = f"{path}, line {line}" if line else str(path)
    return UserError(f"malformed data file {where}: {what}")


def json_lines(path: Path) -> Iterator[tuple[int, dict]]:
    """(line number, object) for every non-blank line; any bad line is a UserError naming it."""
    for number, record in read_json_lines(path, lambda line, what: malformed(path, line, what)):
        if not isinstance(record, dict):
            raise malformed(path, number, "expected one JSON object per line")
        yield number, record


def json_document(path: Path):
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except json.JSONDecodeError as exc:
        raise malformed(path, exc.lineno, f"not valid JSON ({exc.msg})") from None


def csv_rows(path: Path, header: bool = True) -> Iterator[tuple[int, dict | list]]:
    """(line number, row) for every CSV row: dicts keyed by the header, or plain lists."""
    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle) if header else csv.reader(handle)
        try:
            for row in reader:
                yield reader.line_num, row
        except csv.Error as exc:
            raise malformed(path, reader.line_num, f"CSV error ({exc})") from None


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
