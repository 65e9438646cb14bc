"""MMLU: the published subject CSVs, rows `question, A, B, C, D, answer` (no header), one file per subject.

`path` is one subject's CSV, or the directory holding `<subject>_test.csv` files (the release's
`data/test/`), of which `subjects` chooses some (default: every file there, 57 in the release). The
Hugging Face JSON-lines export (`question`, `choices`, `answer` as 0-based index) is read too. Each item
records its subject in `meta`, so accuracy can be split by subject.
"""

from __future__ import annotations

from pathlib import Path

from evaluators.items import MCItem, lettered
from evaluators.loaders.common import LoadedItems, collect, csv_rows, json_lines, malformed, require

SUFFIX = "_test.csv"


def _subject_files(path: Path, subjects) -> list[tuple[str, Path]]:
    if path.is_file():
        return [(path.name.removesuffix(SUFFIX).removesuffix(path.suffix), path)]
    found = {p.name.removesuffix(SUFFIX): p for p in sorted(path.glob(f"*{SUFFIX}"))}
    if not found:
        raise malformed(path, None, f"no <subject>{SUFFIX} files in this directory")
    chosen = list(subjects) if subjects else sorted(found)
    missing = [s for s in chosen if s not in found]
    if missing:
        raise malformed(path, None, f"no file for subject(s) {', '.join(missing)}; found: {', '.join(found)}")
    return [(subject, found[subject]) for subject in chosen]


def _csv_item(path: Path, subject: str):
    def parse(line, row):
        if not row or not any(cell.strip() for cell in row):
            return None
        if [cell.strip().lower() for cell in row[:6]] == ["question", "a", "b", "c", "d", "answer"]:
            return None
        if len(row) != 6:
            raise malformed(path, line, f"expected 6 columns (question, A, B, C, D, answer), got {len(row)}")
        question, *texts, answer = row
        answer = answer.strip().upper()
        if answer not in ("A", "B", "C", "D"):
            raise malformed(path, line, "answer is not A, B, C or D")
        return MCItem(
            id=f"{path.stem}-{line}",
            question=question,
            options=dict(zip("ABCD", texts)),
            answer=answer,
            domain="general",
            meta={"subject": subject},
        )

    return parse


def _json_item(path: Path, subject: str):
    def parse(line, record):
        require(record, ("question", "choices", "answer"), path, line)
        choices = record["choices"]
        if not isinstance(choices, list) or len(choices) != 4:
            raise malformed(path, line, "choices must be a list of 4 options")
        answer = record["answer"]
        index = answer if isinstance(answer, int) else "ABCD".find(str(answer).strip().upper())
        if not 0 <= index < 4:
            raise malformed(path, line, "answer is not an index 0-3 or a letter A-D")
        return MCItem(
            id=str(record.get("id", f"{path.stem}-{line}")),
            question=str(record["question"]),
            options=lettered(choices),
            answer="ABCD"[index],
            domain="general",
            meta={"subject": str(record.get("subject") or subject)},
        )

    return parse


def load(path: Path, strict: bool = False, subjects: list[str] | None = None):
    items, skipped = [], []
    for subject, file in _subject_files(path, subjects):
        if file.suffix == ".csv":
            part = collect(file, csv_rows(file, header=False), _csv_item(file, subject), strict)
        else:
            part = collect(file, json_lines(file), _json_item(file, subject), strict)
        items += part
        skipped += part.skipped
    return LoadedItems(items, skipped)
