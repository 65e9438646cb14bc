"""Calibration files -> documents: one reader per file format, the record kind decided per record.

Formats (chosen by file name, see docs/pruning-methods.md):
- ``*.jsonl``: one object per line, each line on its own one of
  ``{"text": "..."}``, ``{"messages": [{"role", "content"}, ...]}`` or a MedINST instruction record
  ``{"instruction", "input", "output"}``; messages and instruction records are rendered through the
  model's chat template later (`pruning.calibration.tokenize`).
- ``*.txt``: plain text; blank lines separate documents.
- ``*.json``: PubMedQA (``ori_pqal.json``): ``{PMID: {QUESTION, CONTEXTS, LONG_ANSWER, final_decision}}``,
  rendered as question, contexts and answer.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from moeprune.errors import UserError
from moeprune.formats.jsonfile import json_lines


@dataclass(frozen=True)
class Document:
    """One calibration sample before tokenization: plain text, or chat messages."""

    source: str  # "file:line" for error messages and provenance
    text: str | None = None
    messages: tuple[dict, ...] | None = None
    kind: str = "text"  # text, messages, medinst, pubmedqa: counted per file in the calibration record


def _line_error(path: Path, line: int, what: str) -> UserError:
    return UserError(f"{path}:{line}: {what}")


def read_jsonl(path: Path) -> list[Document]:
    def bad_line(line: int, what: str) -> UserError:
        return _line_error(path, line, f"{what}; fix or remove the line")

    return [_jsonl_document(path, number, item) for number, item in json_lines(path, bad_line)]


def _jsonl_document(path: Path, line_number: int, item) -> Document:
    source = f"{path.name}:{line_number}"
    if isinstance(item, dict) and isinstance(item.get("text"), str):
        return Document(source, text=item["text"])
    if isinstance(item, dict) and isinstance(item.get("messages"), list):
        messages = item["messages"]
        for message in messages:
            if not (
                isinstance(message, dict)
                and isinstance(message.get("role"), str)
                and isinstance(message.get("content"), str)
            ):
                raise _line_error(path, line_number, 'each message needs string "role" and "content" fields')
        if not messages:
            raise _line_error(path, line_number, '"messages" is empty')
        return Document(source, messages=tuple(messages), kind="messages")
    if isinstance(item, dict) and ("instruction" in item or "output" in item):
        return Document(source, messages=medinst_messages(path, line_number, item), kind="medinst")
    raise _line_error(
        path,
        line_number,
        'expected an object with a string "text", a list "messages", or MedINST "instruction"/"input"/"output" strings',
    )


def medinst_messages(path: Path, line_number: int, item: dict) -> tuple[dict, ...]:
    """A MedINST record as two chat turns: instruction (+ "\\n\\nInput: " + input when there is one), output.

    This is how the study's code turned its MedINST32 calibration records into a conversation before
    applying the chat template; an empty output leaves the user turn alone, as there.
    """
    instruction, given, output = item.get("instruction"), item.get("input"), item.get("output")
    if not (isinstance(instruction, str) and instruction.strip()):
        raise _line_error(path, line_number, 'a MedINST record needs a non-empty string "instruction"')
    if given is not None and not isinstance(given, str):
        raise _line_error(path, line_number, f'MedINST "input" must be a string (got {type(given).__name__})')
    if not isinstance(output, str):
        raise _line_error(path, line_number, 'a MedINST record needs a string "output"')
    user = f"{instruction}\n\nInput: {given}" if given else instruction
    turns = [{"role": "user", "content": user}]
    if output:
        turns.append({"role": "assistant", "content": output})
    return tuple(turns)


def read_text(path: Path) -> list[Document]:
    """Blank lines separate documents, so one file can hold many samples."""
    documents, lines, start = [], [], 1
    with path.open(encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if line.strip():
                if not lines:
                    start = line_number
                lines.append(line.rstrip("\n"))
            elif lines:
                documents.append(Document(f"{path.name}:{start}", text="\n".join(lines)))
                lines = []
    if lines:
        documents.append(Document(f"{path.name}:{start}", text="\n".join(lines)))
    return documents


def read_pubmedqa(path: Path) -> list[Document]:
    raw = path.read_text(encoding="utf-8")
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise _line_error(path, exc.lineno, f"not valid JSON ({exc.msg})") from exc
    if not isinstance(data, dict):
        raise _line_error(path, 1, "expected PubMedQA JSON: an object {PMID: {QUESTION, CONTEXTS, LONG_ANSWER}}")
    documents = []
    for pmid, entry in data.items():
        line = raw.count("\n", 0, max(raw.find(json.dumps(pmid)), 0)) + 1
        if not (
            isinstance(entry, dict)
            and isinstance(entry.get("QUESTION"), str)
            and isinstance(entry.get("CONTEXTS"), list)
            and isinstance(entry.get("LONG_ANSWER"), str)
            and all(isinstance(c, str) for c in entry["CONTEXTS"])
        ):
            raise _line_error(
                path,
                line,
                f"PubMedQA entry {pmid!r} needs string QUESTION, list of strings CONTEXTS and string LONG_ANSWER",
            )
        documents.append(Document(f"{path.name}:{line}", text=render_pubmedqa(entry), kind="pubmedqa"))
    return documents


def render_pubmedqa(entry: dict) -> str:
    text = f"Question: {entry['QUESTION']}\nContext: {' '.join(entry['CONTEXTS'])}\nAnswer: {entry['LONG_ANSWER']}"
    if isinstance(entry.get("final_decision"), str):
        text += f"\nFinal answer: {entry['final_decision']}"
    return text


# File suffix -> reader. One registry; its error lists the valid suffixes.
READERS: dict[str, Callable[[Path], list[Document]]] = {
    ".jsonl": read_jsonl,
    ".txt": read_text,
    ".json": read_pubmedqa,
}


def read_documents(path: str | Path) -> list[Document]:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"calibration file {path} does not exist; pass existing files", param="calibration")
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise UserError(
            f"calibration file {path}: unknown format {path.suffix!r}; use one of {', '.join(READERS)} "
            "(JSONL text/messages/MedINST, plain text, PubMedQA JSON)"
        )
    try:
        return reader(path)
    except UnicodeDecodeError as exc:
        raise UserError(f"calibration file {path} is not UTF-8 text ({exc.reason})") from exc
