"""PubMedQA's `ori_pqal.json`: {PMID: {QUESTION, CONTEXTS, final_decision, ...}}.

Rendered as a yes/no/maybe multiple-choice item whose question carries the
abstract's context paragraphs (also kept apart as the prompt fields `context`
and `question_text`, for task prompts that place them themselves). `pmids`
restricts the file to a list of PMIDs, such as the 500-question test fold
(`test_ground_truth.json`, {PMID: label}; or a JSON list; or one PMID a line).
"""

from __future__ import annotations

import json
from pathlib import Path

from evaluators.items import MCItem
from evaluators.loaders.common import collect, json_document, malformed

OPTIONS = {"A": "yes", "B": "no", "C": "maybe"}
LETTER_OF = {text: letter for letter, text in OPTIONS.items()}


def _line_of(text: str, pmid: str) -> int | None:
    """The line where entry `pmid` starts, so semantic errors point at it like syntax errors do."""
    at = text.find(f'"{pmid}"')
    return text.count("\n", 0, at) + 1 if at >= 0 else None


def read_pmids(path: Path) -> list[str]:
    if not Path(path).is_file():
        raise malformed(Path(path), None, "the PMID list does not exist")
    text = Path(path).read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return [line.strip() for line in text.splitlines() if line.strip()]
    if isinstance(data, (dict, list)):
        return [str(pmid) for pmid in data]
    raise malformed(Path(path), 1, "a PMID list is a JSON object keyed by PMID, a JSON list, or one a line")


def load(path: Path, strict: bool = False, pmids: Path | None = None):
    data = json_document(path)
    text = path.read_text(encoding="utf-8")
    if not isinstance(data, dict):
        raise malformed(path, 1, "expected a JSON object {PMID: {QUESTION, CONTEXTS, final_decision}}")
    wanted = read_pmids(pmids) if pmids is not None else None
    entries = list(data.items()) if wanted is None else [(pmid, data.get(pmid)) for pmid in wanted]

    def parse(line, entry):
        pmid, record = entry
        if record is None:
            raise malformed(path, None, "PMID of the list is not in the data file")
        if not isinstance(record, dict) or not record.get("QUESTION") or "final_decision" not in record:
            raise malformed(path, line, "entry lacks QUESTION or final_decision")
        decision = str(record["final_decision"]).strip().lower()
        if decision not in LETTER_OF:
            raise malformed(path, line, f"entry {pmid!r}: final_decision {decision!r} is not yes/no/maybe")
        context = "\n".join(str(c) for c in record.get("CONTEXTS") or [])
        question = f"Context: {context}\n{record['QUESTION']}" if context else str(record["QUESTION"])
        return MCItem(
            id=str(pmid),
            question=question,
            options=dict(OPTIONS),
            answer=LETTER_OF[decision],
            domain="biomedical",
            fields={"context": context, "question_text": str(record["QUESTION"])},
        )

    return collect(path, ((_line_of(text, pmid), (pmid, record)) for pmid, record in entries), parse, strict)
