"""Calibration data: read documents from files, sample, tokenize, hash the token stream.

Formats (chosen by file name, see docs/pruning-methods.md):
- ``*.jsonl``: one object per line, ``{"text": "..."}`` or ``{"messages": [{"role", "content"}, ...]}``;
  messages are rendered through the model's chat template, as the study did.
- ``*.txt``: plain text; blank lines separate documents.
- ``*.json``: PubMedQA (``ori_pqal.json``): ``{PMID: {QUESTION, CONTEXTS, LONG_ANSWER, final_decision}}``,
  rendered as question, contexts and answer.

The exact token-id stream the observation pass sees is hashed (sha256), so a
pruning run can be reproduced and compared.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from moeprune.errors import UserError
from pruning.jsonfile import json_lines


@dataclass(frozen=True)
class Document:
    """One calibration sample before tokenization: plain text, or chat messages."""

    source: str  # "file:line" for error messages and provenance
    text: str | None = None
    messages: tuple[dict, ...] | None = None


@dataclass(frozen=True)
class CalibrationSet:
    """Token-id sequences ready for the observation pass, and their provenance record."""

    sequences: list[list[int]]
    record: dict


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
            if not (isinstance(message, dict) and isinstance(message.get("role"), str)
                    and isinstance(message.get("content"), str)):
                raise _line_error(path, line_number, 'each message needs string "role" and "content" fields')
        if not messages:
            raise _line_error(path, line_number, '"messages" is empty')
        return Document(source, messages=tuple(messages))
    raise _line_error(path, line_number, 'expected an object with a string "text" or a list "messages"')


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
        raise _line_error(path, exc.lineno, f"not valid JSON ({exc.msg})")
    if not isinstance(data, dict):
        raise _line_error(path, 1, "expected PubMedQA JSON: an object {PMID: {QUESTION, CONTEXTS, LONG_ANSWER}}")
    documents = []
    for pmid, entry in data.items():
        line = raw.count("\n", 0, max(raw.find(json.dumps(pmid)), 0)) + 1
        if not (isinstance(entry, dict) and isinstance(entry.get("QUESTION"), str)
                and isinstance(entry.get("CONTEXTS"), list) and isinstance(entry.get("LONG_ANSWER"), str)
                and all(isinstance(c, str) for c in entry["CONTEXTS"])):
            raise _line_error(
                path, line, f"PubMedQA entry {pmid!r} needs string QUESTION, list of strings CONTEXTS and string LONG_ANSWER"
            )
        documents.append(Document(f"{path.name}:{line}", text=render_pubmedqa(entry)))
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
            "(JSONL text/messages, plain text, PubMedQA JSON)"
        )
    try:
        return reader(path)
    except UnicodeDecodeError as exc:
        raise UserError(f"calibration file {path} is not UTF-8 text ({exc.reason})")


def tokenize(document: Document, tokenizer) -> list[int]:
    if document.messages is not None:
        if not getattr(tokenizer, "chat_template", None):
            raise UserError(
                f"{document.source}: chat messages need the model's chat template, and this tokenizer has none; "
                'use {"text": ...} records instead'
            )
        rendered = tokenizer.apply_chat_template(list(document.messages), tokenize=False)
        # The template already adds whatever special tokens the model expects.
        return list(tokenizer(rendered, add_special_tokens=False)["input_ids"])
    return list(tokenizer(document.text, add_special_tokens=True)["input_ids"])


def token_stream_sha256(sequences: list[list[int]]) -> str:
    """sha256 of the exact token stream: per sample, its length then its ids, as little-endian int64."""
    digest = hashlib.sha256()
    for sequence in sequences:
        digest.update(len(sequence).to_bytes(8, "little"))
        for token in sequence:
            digest.update(int(token).to_bytes(8, "little", signed=True))
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_calibration(files, tokenizer, *, samples: int = 128, max_tokens: int = 2048, seed: int = 0) -> CalibrationSet:
    """Read every file, draw `samples` documents (seeded), tokenize and truncate each to `max_tokens`."""
    if samples < 1:
        raise UserError(f"samples must be at least 1 (got {samples})", param="samples")
    if max_tokens < 1:
        raise UserError(f"max_tokens must be at least 1 (got {max_tokens})", param="max_tokens")
    paths = [Path(f) for f in files]
    if not paths:
        raise UserError("no calibration files given; pass one or more", param="calibration")
    documents = [doc for path in paths for doc in read_documents(path)]
    if not documents:
        raise UserError(f"calibration files {', '.join(map(str, paths))} contain no documents")
    available = len(documents)
    if len(documents) > samples:
        # Draw without replacement, then keep file order so the stream reads like the inputs.
        chosen = sorted(random.Random(seed).sample(range(len(documents)), samples))
        documents = [documents[i] for i in chosen]
    sequences = [ids[:max_tokens] for ids in (tokenize(doc, tokenizer) for doc in documents)]
    sequences = [ids for ids in sequences if ids]
    if not sequences:
        raise UserError("every calibration document tokenized to nothing; check the files' content")
    record = {
        "files": [str(path) for path in paths],
        "file_sha256": {str(path): file_sha256(path) for path in paths},
        "documents_available": available,
        "samples": len(sequences),
        "tokens": sum(len(ids) for ids in sequences),
        "max_tokens": max_tokens,
        "seed": seed,
        "sha256": token_stream_sha256(sequences),
    }
    return CalibrationSet(sequences, record)
