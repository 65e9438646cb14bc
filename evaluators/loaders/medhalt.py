"""Med-HALT, in its own layout: reasoning tests (reasoning_FCT, reasoning_nota, reasoning_fake) and
retrieval tests (IR_abstract2pubmedlink, IR_pmid2title, IR_pubmedlink2title, IR_title2pubmedlink).

Reasoning rows (the published CSVs, or JSON / JSON-lines re-exports of the same records): `id`,
`question`, `options` (a Python/JSON dict literal {"0": text, ...}; FCT's carries the student's answer
under "correct answer"), `correct_answer`, `correct_index` (0-based), and `student_index` in some
re-exports. Retrieval rows: `PMID`, `Title`, `url`, `Abstract`.

Two readings of the reasoning tests:
- multiple choice (`medhalt_fct`, `medhalt_nota`, `medhalt_fake`): nota is a plain MC item; fake's right
  answer is the abstain option ("I do not know"), from `correct_index` or found by its text; fct becomes
  a yes/no item "is the proposed answer correct?".
- the study's JSON-answer generation (`medhalt_reasoning`, `medhalt_ir`): the item's `input` field is
  Med-HALT's input object as JSON, and the target is the answer text (the title, the url, the correct
  option, or "I do not know" for fake).
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

from evaluators.items import GenItem, MCItem, lettered
from evaluators.loaders.common import collect, malformed, require, table_records
from evaluators.prompts import abstain_option

STUDENT_KEY = "correct answer"  # where FCT's options dict carries the proposed answer


def _options_dict(raw, path: Path, line) -> dict:
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
        return {str(i): text for i, text in enumerate(parsed)}
    if not isinstance(parsed, dict):
        raise malformed(path, line, "options is not a dict literal {'0': text, ...}")
    return parsed


def _options(raw, path: Path, line) -> list[str]:
    parsed = _options_dict(raw, path, line)
    numbered = {k: v for k, v in parsed.items() if str(k).strip().isdigit()}
    if not numbered:
        raise malformed(path, line, "options has no numbered entries")
    return [str(numbered[k]) for k in sorted(numbered, key=lambda k: int(str(k)))]


def _index(record: dict, key: str, count: int, path: Path, line) -> int:
    try:
        index = int(float(str(record[key]).strip()))
    except (KeyError, ValueError):
        raise malformed(path, line, f"{key} is not an option index") from None
    if not 0 <= index < count:
        raise malformed(path, line, f"{key} is outside the options")
    return index


def load_nota(path: Path, strict: bool = False):
    def parse(line, record):
        require(record, ("question", "options", "correct_index"), path, line)
        texts = _options(record["options"], path, line)
        answer = "ABCDEFGHIJ"[_index(record, "correct_index", len(texts), path, line)]
        return MCItem(
            str(record.get("id", f"nota-{line}")),
            str(record["question"]),
            lettered(texts),
            answer,
            kind="nota",
            domain="biomedical",
        )

    return collect(path, table_records(path), parse, strict)


def load_fake(path: Path, strict: bool = False):
    def parse(line, record):
        require(record, ("question", "options"), path, line)
        options = lettered(_options(record["options"], path, line))
        if record.get("correct_index") not in (None, ""):
            answer = "ABCDEFGHIJ"[_index(record, "correct_index", len(options), path, line)]
        else:
            answer = abstain_option(options)
            if answer is None:
                raise malformed(
                    path,
                    line,
                    "no correct_index and no abstain option worded as the loader knows "
                    "('I do not know', 'I don't know', ...)",
                )
        return MCItem(
            str(record.get("id", f"fake-{line}")),
            str(record["question"]),
            options,
            answer,
            kind="fake",
            domain="biomedical",
        )

    return collect(path, table_records(path), parse, strict)


def _proposed(record: dict, texts: list[str], path: Path, line) -> int:
    """FCT's proposed answer: `student_index`, else the options' "correct answer" entry matched to an option."""
    if record.get("student_index") not in (None, ""):
        return _index(record, "student_index", len(texts), path, line)
    proposed = _options_dict(record["options"], path, line).get(STUDENT_KEY)
    matches = [
        i
        for i, text in enumerate(texts)
        if proposed is not None and text.strip().lower() == str(proposed).strip().lower()
    ]
    if len(matches) != 1:
        raise malformed(path, line, "no student_index, and the options' 'correct answer' matches no one option")
    return matches[0]


def load_fct(path: Path, strict: bool = False):
    def parse(line, record):
        require(record, ("question", "options", "correct_index"), path, line)
        texts = _options(record["options"], path, line)
        correct = _index(record, "correct_index", len(texts), path, line)
        proposed = _proposed(record, texts, path, line)
        choices = "\n".join(f"({i}) {text}" for i, text in enumerate(texts))
        question = (
            f"{record['question']}\nChoices:\n{choices}\nProposed answer: {texts[proposed]}\n"
            "Is the proposed answer correct?"
        )
        return MCItem(
            str(record.get("id", f"fct-{line}")),
            question,
            {"A": "Yes", "B": "No"},
            "A" if proposed == correct else "B",
            kind="fct",
            domain="biomedical",
        )

    return collect(path, table_records(path), parse, strict)


REASONING_TESTS = ("fct", "nota", "fake")
FAKE_TARGET = "I do not know"


def load_reasoning(path: Path, strict: bool = False, test: str = "nota"):
    """The study's reading: generation items whose `input` is Med-HALT's {"Question", "Options"} object."""
    if test not in REASONING_TESTS:
        raise malformed(path, None, f"Med-HALT reasoning test {test!r} is not one of {', '.join(REASONING_TESTS)}")

    def parse(line, record):
        require(record, ("question", "options"), path, line)
        texts = _options(record["options"], path, line)
        shown = {str(i): text for i, text in enumerate(texts)}
        if test == "fct":
            shown[STUDENT_KEY] = texts[_proposed(record, texts, path, line)]
        if test == "fake":
            target = FAKE_TARGET
        elif record.get("correct_answer") not in (None, ""):
            target = str(record["correct_answer"])
        else:
            target = texts[_index(record, "correct_index", len(texts), path, line)]
        payload = json.dumps({"Question": str(record["question"]), "Options": shown}, ensure_ascii=False)
        return GenItem(
            str(record.get("id", f"{test}-{line}")),
            {"input": payload, "question": str(record["question"])},
            target,
            kind="fake" if test == "fake" else test,
        )

    return collect(path, table_records(path), parse, strict)


# test -> (the input column, its key in Med-HALT's input object, the target column)
IR_TESTS = {
    "abs2pub": ("Abstract", "paper_abstract", "url"),
    "pmid2title": ("PMID", "Pmid", "Title"),
    "url2title": ("url", "url", "Title"),
    "title2pub": ("Title", "paper_title", "url"),
}


def _pmid(value) -> str:
    text = str(value).strip()
    return text[:-2] if text.endswith(".0") and text[:-2].isdigit() else text  # pandas wrote floats


def load_ir(path: Path, strict: bool = False, test: str = "pmid2title"):
    if test not in IR_TESTS:
        raise malformed(path, None, f"Med-HALT retrieval test {test!r} is not one of {', '.join(IR_TESTS)}")
    column, key, target_column = IR_TESTS[test]

    def parse(line, record):
        require(record, (column, target_column), path, line)
        value = _pmid(record[column]) if column == "PMID" else str(record[column])
        payload = json.dumps({key: value}, ensure_ascii=False)
        return GenItem(
            str(record.get("id") or f"{test}-{line}"),
            {"input": payload, key: value},
            str(record[target_column]).strip(),
        )

    return collect(path, table_records(path), parse, strict)
