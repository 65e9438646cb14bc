"""PubMedQA's `ori_pqal.json`: {PMID: {QUESTION, CONTEXTS, final_decision, ...}}.

Rendered as a yes/no/maybe multiple-choice item whose question carries the
abstract's context paragraphs, so the answer is parsed like any MC answer.
"""

from __future__ import annotations

from pathlib import Path

from evaluators.items import MCItem
from evaluators.loaders.common import json_document, malformed

OPTIONS = {"A": "yes", "B": "no", "C": "maybe"}
LETTER_OF = {text: letter for letter, text in OPTIONS.items()}


def _line_of(text: str, pmid: str) -> int | None:
    """The line where entry `pmid` starts, so semantic errors point at it like syntax errors do."""
    at = text.find(f'"{pmid}"')
    return text.count("\n", 0, at) + 1 if at >= 0 else None


def load(path: Path) -> list[MCItem]:
    data = json_document(path)
    text = path.read_text(encoding="utf-8")
    if not isinstance(data, dict):
        raise malformed(path, 1, "expected a JSON object {PMID: {QUESTION, CONTEXTS, final_decision}}")
    items = []
    for pmid, record in data.items():
        if not isinstance(record, dict) or not record.get("QUESTION") or "final_decision" not in record:
            raise malformed(path, _line_of(text, pmid), f"entry {pmid!r} lacks QUESTION or final_decision")
        decision = str(record["final_decision"]).strip().lower()
        if decision not in LETTER_OF:
            raise malformed(path, _line_of(text, pmid),
                            f"entry {pmid!r}: final_decision {decision!r} is not yes/no/maybe")
        contexts = record.get("CONTEXTS") or []
        context = "\n".join(str(c) for c in contexts)
        question = f"Context: {context}\n{record['QUESTION']}" if context else str(record["QUESTION"])
        items.append(MCItem(id=str(pmid), question=question, options=dict(OPTIONS),
                            answer=LETTER_OF[decision], domain="biomedical"))
    return items
