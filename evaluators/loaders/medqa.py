"""MedQA (USMLE), in either published layout.

- The MedQA release's JSON lines (`data_clean/questions/US/4_options/*.jsonl`):
  `{"question", "options": {"A": ...}, "answer_idx": "C", "answer", "meta_info"}`.
- The 4-option Hugging Face export: `{"id", "sent1", "ending0".."ending3", "label"}` (label 0-based).
`max_options` keeps files honest: a 4-option task skips a row that has more options.
"""

from __future__ import annotations

from pathlib import Path

from evaluators.items import MCItem, lettered
from evaluators.loaders.common import collect, json_records, letter_answer, malformed, require


def load(path: Path, strict: bool = False, max_options: int | None = None):
    def parse(line, record):
        if "sent1" in record:
            endings = [key for key in ("ending0", "ending1", "ending2", "ending3", "ending4") if key in record]
            require(record, ("sent1", *endings, "label"), path, line)
            options = lettered([str(record[key]) for key in endings])
            question, answer = record["sent1"], record["label"]
            if isinstance(answer, str) and answer.strip().isdigit():
                answer = int(answer)
        else:
            require(record, ("question", "options", "answer_idx"), path, line)
            if not isinstance(record["options"], dict):
                raise malformed(path, line, 'options must be an object {"A": text, ...}')
            options = {str(k).strip().upper(): str(v) for k, v in sorted(record["options"].items())}
            question, answer = record["question"], record["answer_idx"]
        if max_options and len(options) > max_options:
            raise malformed(path, line, f"{len(options)} options where the task takes {max_options}")
        return MCItem(
            id=str(record.get("id", f"medqa-{line}")),
            question=str(question),
            options=options,
            answer=letter_answer(answer, options, path, line),
            domain="biomedical",
        )

    return collect(path, json_records(path), parse, strict)
