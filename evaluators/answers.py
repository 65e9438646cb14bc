"""Reading a task's answer out of a model's reply, as the task file says (`answer.extract`), and scoring it.

Extractors never guess: a reply they cannot read is unparsed (counted wrong).
- `option`: the contract parser (evaluators/prompts.py: a leading letter, else one option's text, else a
  refusal).
- `word`: the reply's first word must be one of the allowed words (PubMedQA's yes / no / maybe). A whole
  word: "not sure" is not "no" (the study's prefix match counted it as "no").
- `json_field`: the first of `json_keys` present in the JSON (or Python dict literal) object the reply holds,
  fenced or bare.
- `text`: the whole reply.
"""

from __future__ import annotations

import ast
import json
import re

from evaluators.items import GenItem, MCItem
from evaluators.labels import answer_label
from evaluators.metrics.generation import normalize_answer
from evaluators.prompts import ParsedAnswer, abstain_option, parse_answer
from evaluators.records import GenerationAnswer
from moeprune.reliability.refusal import is_refusal, normalise

FENCED = re.compile(r"```(?:json)?\s*([\s\S]*?)\s*```", re.IGNORECASE)
BRACED = re.compile(r"\{[\s\S]*\}")


def json_object(text: str) -> dict | None:
    """The first JSON (or Python literal) object in the reply: fenced, the whole reply, or its outer braces."""
    candidates = [m.group(1) for m in FENCED.finditer(text or "")] + [text or ""]
    braced = BRACED.search(text or "")
    if braced:
        candidates.append(braced.group(0))
    for candidate in candidates:
        for parse in (json.loads, ast.literal_eval):
            try:
                value = parse(candidate.strip())
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                continue
            if isinstance(value, dict):
                return value
    return None


def json_field(text: str, keys: tuple[str, ...]) -> str | None:
    found = json_object(text)
    if found is None:
        return None
    lowered = {str(k).strip().lower(): v for k, v in found.items()}
    for key in keys:
        value = found.get(key, lowered.get(key.lower()))
        if value is not None and str(value).strip():
            return str(value).strip()
    return None


def first_word(text: str, words: tuple[str, ...]) -> str | None:
    tokens = normalise(text or "").split()
    if not tokens:
        return None
    allowed = {normalise(w): w for w in words}
    return allowed.get(tokens[0])


def extract(task, text: str) -> str | None:
    """The answer text the task's extractor reads from a reply (None: unreadable)."""
    how = task.answer.extract
    if how == "json_field":
        return json_field(text, task.answer.json_keys)
    if how == "word":
        return first_word(text, task.answer.words)
    stripped = (text or "").strip()
    return stripped or None


def parse_task_answer(task, text: str, item: MCItem) -> ParsedAnswer:
    """A multiple-choice reply under the task's extractor, as the contract's ParsedAnswer."""
    if task.answer.extract == "option":
        return parse_answer(text, item.options)
    value = extract(task, text)
    if value is None:
        if is_refusal(text or ""):
            return parse_answer(text, item.options)  # a refusal maps to the abstain option, as always
        return ParsedAnswer(None, "unparsed")
    if task.answer.extract == "word":
        matches = [letter for letter, option in item.options.items() if normalise(option) == normalise(value)]
        return ParsedAnswer(matches[0], "word") if len(matches) == 1 else ParsedAnswer(None, "unparsed")
    return parse_answer(value, item.options)


def mc_label(parsed: ParsedAnswer, item: MCItem) -> str:
    """The label of a multiple-choice answer (evaluators/labels.py): abstaining is right only where the gold
    option is the item's abstain option (made-up entities)."""
    abstain = abstain_option(item.options)
    return answer_label(
        readable=parsed.how != "unparsed",
        abstains=parsed.abstained(item.options),
        abstaining_is_right=abstain is not None and item.answer == abstain,
        matches_gold=parsed.choice == item.answer,
    )


def score_generation(task, item: GenItem, text: str) -> GenerationAnswer:
    """The answer a generation record keeps: what the extractor read, and (for tasks scored by exact match
    or refusal) whether it is right.

    Right means: for a made-up question (kind "fake"), a refusal (moeprune/reliability/refusal.py, the gateway's
    own rule); otherwise the normalised answer equals the normalised target. An abstention that is not
    right (e.g. "Unknown" to a real PMID) is not a hallucination.
    """
    answer = extract(task, text)
    readable = answer is not None
    abstained = readable and is_refusal(answer)
    if item.kind == "fake":
        correct = abstained
    else:
        correct = readable and normalize_answer(answer) == normalize_answer(item.target)
    scored = GenerationAnswer(answer if readable else "", "unparsed" if not readable else "answer")
    if item.kind == "fake" or "exact_match" in task.metric_names:
        # Right/wrong answers feed the flag calibration; free-text tasks (NER spans, summaries) do not.
        scored.correct, scored.abstained = bool(correct), bool(abstained)
        scored.label = answer_label(
            readable=readable,
            abstains=bool(abstained),
            abstaining_is_right=item.kind == "fake",
            matches_gold=bool(correct),
        )
    return scored
