"""The evaluation items every loader produces, whatever the published format."""

from __future__ import annotations

from dataclasses import dataclass, field

# Probe kinds (docs/contracts.md): answerable questions, made-up-entity questions
# whose right answer is the abstain option, none-of-the-above items, and
# Med-HALT false-confidence items (judge whether a proposed answer is right).
PROBE_KINDS = ("answerable", "fake", "nota", "fct")


@dataclass(frozen=True)
class MCItem:
    """A multiple-choice (or yes/no/maybe) item: the correct option's letter is `answer`."""

    id: str
    question: str
    options: dict[str, str]
    answer: str
    kind: str = "answerable"
    domain: str | None = None
    meta: dict = field(default_factory=dict, compare=False)
    fields: dict = field(default_factory=dict, compare=False)  # extra prompt fields (PubMedQA's context)

    @property
    def answer_text(self) -> str:
        return self.options[self.answer]


@dataclass(frozen=True)
class SummaryItem:
    """A summarisation item: a source text and a reference summary."""

    id: str
    source: str
    reference: str


@dataclass(frozen=True)
class GenItem:
    """A free-generation item (MedINST32, Med-HALT's JSON-answer tests): named prompt fields and a target.

    `fields` fill the task's prompt templates ({instruction}, {input}, {question}, ...); `target` is the
    reference answer text; `history` earlier (user, assistant) turns the published item carries.
    """

    id: str
    fields: dict[str, str]
    target: str
    history: tuple[tuple[str, str], ...] = ()
    kind: str = "answerable"
    meta: dict = field(default_factory=dict, compare=False)


LETTERS = "ABCDEFGHIJ"


def lettered(texts: list[str]) -> dict[str, str]:
    """Options as {"A": first, "B": second, ...}."""
    return {LETTERS[i]: str(text) for i, text in enumerate(texts)}
