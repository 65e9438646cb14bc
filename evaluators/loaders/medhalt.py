"""Med-HALT reasoning tests (reasoning_FCT, reasoning_nota, reasoning_fake).

The published CSVs (and their JSON re-exports, a list of the same records)
have one row per item with `question`, `options` (a Python/JSON dict literal
{"0": text, "1": text, ...}, sometimes with an extra "correct answer" key),
`correct_index` (0-based) and `correct_answer`; FCT rows add `student_index`,
the proposed answer a model must accept or reject.

- nota: a plain MC item whose correct option is "None of the above".
- fake: a made-up question; the correct answer is the abstain option
  ("I do not know"), taken from `correct_index` or found by its text.
- fct: rendered as a yes/no item: "is the proposed answer correct?".
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

from evaluators.items import MCItem, lettered
from evaluators.loaders.common import csv_rows, json_document, json_lines, malformed, require
from evaluators.prompts import abstain_option


def _records(path: Path):
    if path.suffix == ".csv":
        yield from csv_rows(path)
    elif path.suffix == ".jsonl":
        yield from json_lines(path)
    else:
        data = json_document(path)
        if not isinstance(data, list):
            raise malformed(path, 1, "expected a JSON list of records")
        for number, record in enumerate(data, start=1):
            if not isinstance(record, dict):
                raise malformed(path, None, f"record {number} is not an object")
            yield None, record


def _options(raw, path: Path, line) -> list[str]:
    parsed = raw
    if isinstance(raw, str):
        try:
            parsed = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            try:
                parsed = json.loads(raw)
            except json.JSONDecodeError:
                raise malformed(path, line, "options is not a dict literal {'0': text, ...}") from None
    if isinstance(parsed, list):
        return [str(text) for text in parsed]
    if not isinstance(parsed, dict):
        raise malformed(path, line, "options is not a dict literal {'0': text, ...}")
    numbered = {k: v for k, v in parsed.items() if str(k).strip().isdigit()}
    if not numbered:
        raise malformed(path, line, "options has no numbered entries")
    return [str(numbered[k]) for k in sorted(numbered, key=lambda k: int(str(k)))]


def _index(record: dict, key: str, count: int, path: Path, line) -> int:
    try:
        index = int(float(str(record[key]).strip()))
    except (KeyError, ValueError):
        raise malformed(path, line, f"{key} {record.get(key)!r} is not an option index") from None
    if not 0 <= index < count:
        raise malformed(path, line, f"{key} {index} is outside the {count} options")
    return index


def load_nota(path: Path) -> list[MCItem]:
    items = []
    for line, record in _records(path):
        require(record, ("question", "options", "correct_index"), path, line)
        texts = _options(record["options"], path, line)
        answer = "ABCDEFGHIJ"[_index(record, "correct_index", len(texts), path, line)]
        items.append(MCItem(str(record.get("id", f"nota-{line}")), str(record["question"]), lettered(texts),
                            answer, kind="nota", domain="biomedical"))
    return items


def load_fake(path: Path) -> list[MCItem]:
    items = []
    for line, record in _records(path):
        require(record, ("question", "options"), path, line)
        options = lettered(_options(record["options"], path, line))
        if record.get("correct_index") not in (None, ""):
            answer = "ABCDEFGHIJ"[_index(record, "correct_index", len(options), path, line)]
        else:
            answer = abstain_option(options)
            if answer is None:
                raise malformed(path, line, "no correct_index and no 'I do not know'-type option")
        items.append(MCItem(str(record.get("id", f"fake-{line}")), str(record["question"]), options, answer,
                            kind="fake", domain="biomedical"))
    return items


def load_fct(path: Path) -> list[MCItem]:
    items = []
    for line, record in _records(path):
        require(record, ("question", "options", "correct_index", "student_index"), path, line)
        texts = _options(record["options"], path, line)
        correct = _index(record, "correct_index", len(texts), path, line)
        proposed = _index(record, "student_index", len(texts), path, line)
        choices = "\n".join(f"({i}) {text}" for i, text in enumerate(texts))
        question = (f"{record['question']}\nChoices:\n{choices}\nProposed answer: {texts[proposed]}\n"
                    "Is the proposed answer correct?")
        items.append(MCItem(str(record.get("id", f"fct-{line}")), question, {"A": "Yes", "B": "No"},
                            "A" if proposed == correct else "B", kind="fct", domain="biomedical"))
    return items
