"""Calibration data: which files, how many samples from each, tokenized, and the token stream's hash.

Files are read by `pruning.calibration_records` (JSONL text/messages/MedINST, plain text, PubMedQA).
A file may carry its own sample count, ``FILE:N``: N documents are drawn from that file alone with the
seed (the study's dual-domain runs drew 128 biomedical + 128 general samples this way); files without a
count are pooled and share ``samples``, as before. Chat messages and MedINST records are rendered
through the model's chat template with the caller's template arguments (``enable_thinking``,
``reasoning_effort``, ...).

The exact token-id stream the observation pass sees is hashed (sha256), so a
pruning run can be reproduced and compared.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from moeprune.errors import UserError
from pruning.calibration_records import Document, read_documents

# apply_chat_template arguments the pass sets itself: a template argument may not override them.
_RESERVED_TEMPLATE_ARGS = ("conversation", "tokenize", "return_tensors", "return_dict")
_COUNTED = re.compile(r"^(?P<path>.+):(?P<count>[^:/\\]*)$")


@dataclass(frozen=True)
class CalibrationSet:
    """Token-id sequences ready for the observation pass, and their provenance record."""

    sequences: list[list[int]]
    record: dict


@dataclass(frozen=True)
class FileSpec:
    """One --calibration argument: a path and, with FILE:N, its own sample count."""

    path: Path
    count: int | None = None


def parse_file_spec(spec) -> FileSpec:
    """`med.jsonl` or `med.jsonl:128`; a file whose real name ends in `:N` still reads as that file."""
    if isinstance(spec, FileSpec):
        return spec
    text = str(spec)
    match = _COUNTED.match(text)
    if match is None or Path(text).is_file():
        return FileSpec(Path(text))
    count = match.group("count")
    if not count.isdigit() or int(count) < 1:
        raise UserError(
            f"calibration {text!r}: the per-file sample count after ':' must be a positive integer "
            f"(FILE:N, e.g. {match.group('path')}:128)",
            param="calibration",
        )
    return FileSpec(Path(match.group("path")), int(count))


def parse_chat_template_kwargs(value) -> dict:
    """A JSON object (text, or an already-parsed dict) of extra arguments for apply_chat_template."""
    if value is None:
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise UserError(
                f"chat template kwargs are not valid JSON ({exc.msg}): {value!r}; pass an object such "
                """as '{"enable_thinking": false}'""",
                param="chat_template_kwargs",
            ) from None
    if not isinstance(value, dict):
        raise UserError(
            f"chat template kwargs must be a JSON object of template arguments, not "
            f'{type(value).__name__} {value!r}; e.g. \'{{"reasoning_effort": "low"}}\'',
            param="chat_template_kwargs",
        )
    reserved = sorted(set(value) & set(_RESERVED_TEMPLATE_ARGS))
    if reserved:
        raise UserError(
            f"chat template kwargs may not set {', '.join(reserved)}: the calibration pass sets those itself",
            param="chat_template_kwargs",
        )
    return dict(value)


def tokenize(document: Document, tokenizer, template_kwargs: dict | None = None) -> list[int]:
    if document.messages is not None:
        if not getattr(tokenizer, "chat_template", None):
            raise UserError(
                f"{document.source}: chat messages need the model's chat template, and this tokenizer has none; "
                'use {"text": ...} records instead'
            )
        rendered = tokenizer.apply_chat_template(list(document.messages), tokenize=False, **(template_kwargs or {}))
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


def _draw(count: int, available: int, seed: int) -> list[int]:
    """Indices drawn without replacement, back in file order so the stream reads like the inputs."""
    if available <= count:
        return list(range(available))
    return sorted(random.Random(seed).sample(range(available), count))


def draw_documents(
    specs: list[FileSpec], read: dict[Path, list[Document]], samples: int, seed: int
) -> dict[Path, list[Document]]:
    """Per file, the drawn documents: FILE:N draws N from that file; the other files share `samples`."""
    chosen: dict[Path, list[Document]] = {}
    for spec in specs:
        if spec.count is not None:
            documents = read[spec.path]
            if spec.count > len(documents):
                raise UserError(
                    f"calibration {spec.path}:{spec.count} asks for {spec.count} samples, but the file "
                    f"holds {len(documents)} documents; lower the count or add data",
                    param="calibration",
                )
            chosen[spec.path] = [documents[i] for i in _draw(spec.count, len(documents), seed)]
    pooled = [(spec.path, document) for spec in specs if spec.count is None for document in read[spec.path]]
    for path, document in (pooled[i] for i in _draw(samples, len(pooled), seed)):
        chosen.setdefault(path, []).append(document)
    return {spec.path: chosen.get(spec.path, []) for spec in specs}


def load_calibration(
    files, tokenizer, *, samples: int = 128, max_tokens: int = 2048, seed: int = 0, chat_template_kwargs=None
) -> CalibrationSet:
    """Read every file, draw the documents (seeded; per file with FILE:N), tokenize, truncate to `max_tokens`."""
    if samples < 1:
        raise UserError(f"samples must be at least 1 (got {samples})", param="samples")
    if max_tokens < 1:
        raise UserError(f"max_tokens must be at least 1 (got {max_tokens})", param="max_tokens")
    template_kwargs = parse_chat_template_kwargs(chat_template_kwargs)
    specs = [parse_file_spec(f) for f in files]
    if not specs:
        raise UserError("no calibration files given; pass one or more", param="calibration")
    repeated = [path for path, n in Counter(spec.path for spec in specs).items() if n > 1]
    if repeated:
        raise UserError(
            f"calibration file {repeated[0]} is given more than once; give each file once "
            "(with FILE:N for its own sample count)",
            param="calibration",
        )
    read = {spec.path: read_documents(spec.path) for spec in specs}
    if not any(read.values()):
        raise UserError(f"calibration files {', '.join(str(s.path) for s in specs)} contain no documents")
    chosen = draw_documents(specs, read, samples, seed)
    sequences, per_file = [], {}
    for spec in specs:
        ids = [ids[:max_tokens] for ids in (tokenize(doc, tokenizer, template_kwargs) for doc in chosen[spec.path])]
        ids = [sequence for sequence in ids if sequence]
        sequences.extend(ids)
        per_file[str(spec.path)] = {
            "requested": spec.count,
            "available": len(read[spec.path]),
            "samples": len(ids),
            "tokens": sum(map(len, ids)),
            "kinds": dict(sorted(Counter(d.kind for d in chosen[spec.path]).items())),
        }
    if not sequences:
        raise UserError("every calibration document tokenized to nothing; check the files' content")
    record = {
        "files": [str(spec.path) for spec in specs],
        "file_sha256": {str(spec.path): file_sha256(spec.path) for spec in specs},
        "documents_available": sum(map(len, read.values())),
        "samples": len(sequences),
        "tokens": sum(len(ids) for ids in sequences),
        "max_tokens": max_tokens,
        "seed": seed,
        "per_file": per_file,
        "chat_template_kwargs": template_kwargs,
        "sha256": token_stream_sha256(sequences),
    }
    return CalibrationSet(sequences, record)
