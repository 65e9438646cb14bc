"""The project's own JSON-lines formats: multiple choice, open questions and summarisation.

Multiple choice: `{"question", "options", "answer"}` per line, optionally with
`id`, `kind` (answerable / fake / nota / fct) and `domain` (the shipped sets'
format, docs/contracts.md). `options` is a {"A": text} object or a list;
`answer` a letter, a 0-based index or the option's text.
Open questions (`open_jsonl`): `{"question", "answer"}` per line, optionally `id`, `kind` (answerable /
fake: for a made-up entity the right answer is to decline, whatever `answer` says) and `domain`; the
reply is free text, read whole and compared with `answer` (evaluators/answers.py).
Summarisation: `{"source", "reference"}` per line, optionally `id`.
"""

from __future__ import annotations

from pathlib import Path

from evaluators.items import PROBE_KINDS, GenItem, MCItem, SummaryItem, lettered
from evaluators.loaders.common import collect, json_lines, letter_answer, malformed, require


def parse_options(raw, path: Path, line: int) -> dict[str, str]:
    if isinstance(raw, dict) and raw:
        return {str(key).strip().upper(): str(value) for key, value in raw.items()}
    if isinstance(raw, list) and raw:
        return lettered([str(value) for value in raw])
    raise malformed(path, line, 'options must be a non-empty object {"A": text} or list')


def load_mc(path: Path, strict: bool = False):
    def parse(line, record):
        require(record, ("question", "options", "answer"), path, line)
        options = parse_options(record["options"], path, line)
        kind = record.get("kind", "answerable")
        if kind not in PROBE_KINDS:
            raise malformed(path, line, f"kind {kind!r} is not one of {', '.join(PROBE_KINDS)}")
        return MCItem(
            id=str(record.get("id", f"{path.stem}-{line}")),
            question=str(record["question"]),
            options=options,
            answer=letter_answer(record["answer"], options, path, line),
            kind=kind,
            domain=record.get("domain"),
        )

    return collect(path, json_lines(path), parse, strict)


OPEN_KINDS = ("answerable", "fake")


def load_open(path: Path, strict: bool = False):
    def parse(line, record):
        require(record, ("question", "answer"), path, line)
        kind = record.get("kind", "answerable")
        if kind not in OPEN_KINDS:
            raise malformed(path, line, f"kind {kind!r} is not one of {', '.join(OPEN_KINDS)}")
        question, answer = record["question"], record["answer"]
        if not isinstance(question, str) or not question.strip():
            raise malformed(path, line, "question must be a non-empty string")
        if not isinstance(answer, str) or not answer.strip():
            raise malformed(path, line, "answer must be a non-empty string (the reference answer)")
        return GenItem(
            id=str(record.get("id", f"{path.stem}-{line}")),
            fields={"question": question},
            target=answer,
            kind=kind,
            meta={"domain": record["domain"]} if isinstance(record.get("domain"), str) else {},
        )

    return collect(path, json_lines(path), parse, strict)


def load_summaries(path: Path, strict: bool = False):
    def parse(line, record):
        require(record, ("source", "reference"), path, line)
        return SummaryItem(
            str(record.get("id", f"{path.stem}-{line}")), str(record["source"]), str(record["reference"])
        )

    return collect(path, json_lines(path), parse, strict)
