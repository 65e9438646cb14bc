"""The label of an evaluated answer: `correct`, `wrong`, `unparsed` or `abstained` (docs/evaluators.md, Labels).

Rules, the same for multiple-choice and exact-match answers:
- an answer the task's extractor cannot read is `unparsed` (it counts as wrong wherever errors are counted);
- an answer that abstains (a refusal, or the item's explicit abstain option such as "I don't know") is
  `correct` where abstaining is the right answer (made-up entities) and `abstained` everywhere else: a
  declined answerable question is not an error, and not a success;
- any other answer is `correct` or `wrong` against the gold answer.

Free-text answers with no gold (NER spans, summaries) get no label (None) and stay out of the reliability section.
"""

from __future__ import annotations

CORRECT, WRONG, UNPARSED, ABSTAINED = "correct", "wrong", "unparsed", "abstained"
LABELS = (CORRECT, WRONG, UNPARSED, ABSTAINED)
ERROR_LABELS = (WRONG, UNPARSED)


def answer_label(*, readable: bool, abstains: bool, abstaining_is_right: bool, matches_gold: bool) -> str:
    """The one labelling rule (see the module docstring), whatever the task's answer format."""
    if abstains:
        return CORRECT if abstaining_is_right else ABSTAINED
    if not readable:
        return UNPARSED
    return CORRECT if matches_gold else WRONG


def label_of(record: dict) -> str | None:
    """A record's label; records written before labels existed get theirs from `correct`/`abstained`."""
    if record.get("label") in LABELS:
        return record["label"]
    if "correct" not in record:
        return None
    if record.get("correct"):
        return CORRECT
    if record.get("abstained"):
        return ABSTAINED
    return UNPARSED if record.get("parsed_as") == "unparsed" else WRONG


def is_error(label: str | None) -> bool:
    return label in ERROR_LABELS


def asserts_something(record: dict) -> bool:
    """In the reliability population: labelled and not abstaining.

    A correct refusal of a made-up entity is labelled `correct` but still abstains, and is left out too:
    the gateway cannot tell a right refusal from a wrong one, so it reports every abstention apart
    (`reliability.abstained`) and the certificate bounds only answers that assert something.
    """
    label = label_of(record)
    return label is not None and label != ABSTAINED and not record.get("abstained")
