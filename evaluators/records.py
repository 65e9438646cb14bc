"""Typed item records: what one evaluated item produced, one type per task kind plus the two that were not answered.

An answered item is an `MCRecord`, a `SummaryRecord` or a `GenerationRecord` (the task kind's record type,
evaluators/task_kinds.py); an item the endpoint refused is a `FailedRecord`, one the task's over-long policy
skipped a `SkippedRecord`. Code asks `record.answered` (or the type) instead of looking for sentinel keys.

Each record has one JSON form, `to_json()`: the items.jsonl line's object (evaluators/items_file.py writes
and reads the lines), and what the metrics, the card's flags and reliability section read. Its keys and
their order are the file format, so they never change with the types: the kind's own fields, then the
run's annotations (`domain`, `gate_domain`, `truncated`), then `later` — keys added once the record is in
its JSON form (summary scores, `task`, `reliability`), kept in the order they were added.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

# The JSON keys that mark an item that was not answered (the file format; only this module reads them).
FAILED, SKIPPED = "failed", "skipped"


@dataclass
class GenerationFields:
    """What every answered record keeps of its generation."""

    response: str
    has_logprobs: bool
    finish_reason: str | None
    reasoning: str | None = None  # None: the reply had no reasoning part (the key is then absent)
    attempts: int = 1  # 1 + re-asks after an empty answer (the key is absent at 1)

    def to_json(self) -> dict:
        fields: dict[str, Any] = {
            "response": self.response,
            "has_logprobs": self.has_logprobs,
            "finish_reason": self.finish_reason,
        }
        if self.reasoning is not None:
            fields["reasoning"] = self.reasoning
        if self.attempts > 1:
            fields["attempts"] = self.attempts
        return fields

    @classmethod
    def from_json(cls, data: dict) -> GenerationFields:
        return cls(
            data["response"],
            data["has_logprobs"],
            data["finish_reason"],
            data.get("reasoning"),
            data.get("attempts", 1),
        )


@dataclass
class ItemRecord:
    """Fields every record has: the item's id and the keys added after it took its JSON form."""

    id: str
    later: dict = field(default_factory=dict, kw_only=True)

    answered: ClassVar[bool] = True
    OWN_KEYS: ClassVar[tuple[str, ...]] = ("id",)

    @property
    def task(self) -> str | None:
        """The task's name (set when the run collects its records; None before)."""
        return self.later.get("task")

    def to_json(self) -> dict:
        return {**self._own_json(), **self.later}

    def _own_json(self) -> dict:
        raise NotImplementedError

    @classmethod
    def from_json(cls, data: dict) -> ItemRecord:
        raise NotImplementedError

    @classmethod
    def _later(cls, data: dict) -> dict:
        return {key: value for key, value in data.items() if key not in cls.OWN_KEYS}


@dataclass
class AnsweredRecord(ItemRecord):
    """An answered item: its generation's signals and the run's annotations."""

    signals: dict = field(default_factory=dict, kw_only=True)
    domain: str | None = field(default=None, kw_only=True)  # the item's own domain, else its task's
    gate_domain: str | None = field(default=None, kw_only=True)  # set by the run (evaluators/gate_domains.py)
    truncated: dict | None = field(default=None, kw_only=True)  # how an over-long prompt was cut

    ANNOTATION_KEYS: ClassVar[tuple[str, ...]] = ("domain", "gate_domain", "truncated")

    def _annotations(self) -> dict:
        fields: dict[str, Any] = {}
        if self.domain is not None:
            fields["domain"] = self.domain
        if self.gate_domain is not None:
            fields["gate_domain"] = self.gate_domain
        if self.truncated is not None:
            fields["truncated"] = self.truncated
        return fields

    @classmethod
    def _annotated(cls, data: dict) -> dict:
        return dict(
            signals=data["signals"],
            domain=data.get("domain"),
            gate_domain=data.get("gate_domain"),
            truncated=data.get("truncated"),
            later=cls._later(data),
        )


@dataclass
class MCRecord(AnsweredRecord):
    """A multiple-choice answer: the option chosen, how it was parsed, and the options' log-likelihoods."""

    kind: str  # the item's probe kind (evaluators/items.py PROBE_KINDS)
    gold: str
    generation: GenerationFields
    choice: str | None
    parsed_as: str
    correct: bool
    abstained: bool
    label: str
    option_logprobs: dict[str, float] | None
    option_probs: dict[str, float] | None = None  # None: no option log-likelihoods (the key is then absent)

    OWN_KEYS = (
        "id",
        "kind",
        "gold",
        "response",
        "has_logprobs",
        "finish_reason",
        "reasoning",
        "attempts",
        "choice",
        "parsed_as",
        "correct",
        "abstained",
        "label",
        "option_logprobs",
        "signals",
        "option_probs",
        *AnsweredRecord.ANNOTATION_KEYS,
    )

    def _own_json(self) -> dict:
        fields = {
            "id": self.id,
            "kind": self.kind,
            "gold": self.gold,
            **self.generation.to_json(),
            "choice": self.choice,
            "parsed_as": self.parsed_as,
            "correct": self.correct,
            "abstained": self.abstained,
            "label": self.label,
            "option_logprobs": self.option_logprobs,
            "signals": self.signals,
        }
        if self.option_probs is not None:
            fields["option_probs"] = self.option_probs
        return {**fields, **self._annotations()}

    @classmethod
    def from_json(cls, data: dict) -> MCRecord:
        return cls(
            data["id"],
            data["kind"],
            data["gold"],
            GenerationFields.from_json(data),
            data["choice"],
            data["parsed_as"],
            data["correct"],
            data["abstained"],
            data["label"],
            data["option_logprobs"],
            data.get("option_probs"),
            **cls._annotated(data),
        )


@dataclass
class SummaryRecord(AnsweredRecord):
    """A summary: the source, the reference and the generated summary (scored by overlap and faithfulness)."""

    source: str | None  # kept in memory for the faithfulness scorers; not written to items.jsonl
    reference: str
    generation: GenerationFields

    KIND: ClassVar[str] = "summary"
    OWN_KEYS = (
        "id",
        "kind",
        "source",
        "reference",
        "response",
        "has_logprobs",
        "finish_reason",
        "reasoning",
        "attempts",
        "signals",
        *AnsweredRecord.ANNOTATION_KEYS,
    )

    def _own_json(self) -> dict:
        fields: dict[str, Any] = {"id": self.id, "kind": self.KIND}
        if self.source is not None:
            fields["source"] = self.source
        return {
            **fields,
            "reference": self.reference,
            **self.generation.to_json(),
            "signals": self.signals,
            **self._annotations(),
        }

    @classmethod
    def from_json(cls, data: dict) -> SummaryRecord:
        return cls(
            data["id"], data.get("source"), data["reference"], GenerationFields.from_json(data), **cls._annotated(data)
        )


@dataclass
class GenerationAnswer:
    """The answer a free generation's extractor read, and whether it is right (for tasks that judge it)."""

    answer: str  # "" when unreadable
    parsed_as: str  # "answer" or "unparsed"
    correct: bool | None = None  # None: the task does not judge right/wrong (free-text tasks); keys absent
    abstained: bool | None = None
    label: str | None = None

    def to_json(self) -> dict:
        fields: dict[str, Any] = {"answer": self.answer, "parsed_as": self.parsed_as}
        if self.label is not None:
            fields.update(correct=self.correct, abstained=self.abstained, label=self.label)
        return fields

    @classmethod
    def from_json(cls, data: dict) -> GenerationAnswer:
        return cls(data["answer"], data["parsed_as"], data.get("correct"), data.get("abstained"), data.get("label"))


@dataclass
class GenerationRecord(AnsweredRecord):
    """A free generation (MedINST32, Med-HALT's JSON answers): the answer read from it against the target."""

    kind: str  # the item's probe kind
    target: str
    scored: GenerationAnswer
    generation: GenerationFields

    OWN_KEYS = (
        "id",
        "kind",
        "target",
        "answer",
        "parsed_as",
        "correct",
        "abstained",
        "label",
        "response",
        "has_logprobs",
        "finish_reason",
        "reasoning",
        "attempts",
        "signals",
        *AnsweredRecord.ANNOTATION_KEYS,
    )

    @property
    def correct(self) -> bool | None:
        """Whether the answer is right; None for a task that does not judge right/wrong."""
        return self.scored.correct

    def _own_json(self) -> dict:
        return {
            "id": self.id,
            "kind": self.kind,
            "target": self.target,
            **self.scored.to_json(),
            **self.generation.to_json(),
            "signals": self.signals,
            **self._annotations(),
        }

    @classmethod
    def from_json(cls, data: dict) -> GenerationRecord:
        return cls(
            data["id"],
            data["kind"],
            data["target"],
            GenerationAnswer.from_json(data),
            GenerationFields.from_json(data),
            **cls._annotated(data),
        )


@dataclass
class NotAnsweredRecord(ItemRecord):
    """An item with no answer to score: why, and the endpoint's message (cut to 500 characters)."""

    reason: str  # what the card counts it under
    error: str | None = None

    answered: ClassVar[bool] = False
    KEY: ClassVar[str]  # the JSON key that carries the reason

    def _own_json(self) -> dict:
        fields: dict[str, Any] = {"id": self.id, self.KEY: self.reason}
        if self.error is not None:
            fields["error"] = self.error
        return fields

    @classmethod
    def from_json(cls, data: dict) -> NotAnsweredRecord:
        return cls(data["id"], data[cls.KEY], data.get("error"), later=cls._later(data))


@dataclass
class FailedRecord(NotAnsweredRecord):
    """An item the endpoint refused (HTTP error, timeout, still too long after truncation): never cached."""

    KEY: ClassVar[str] = FAILED
    OWN_KEYS = ("id", FAILED, "error")


@dataclass
class SkippedRecord(NotAnsweredRecord):
    """An item the task's over-long policy skipped (longer than the endpoint's context): never cached."""

    KEY: ClassVar[str] = SKIPPED
    OWN_KEYS = ("id", SKIPPED, "error")


NOT_ANSWERED: tuple[type[NotAnsweredRecord], ...] = (FailedRecord, SkippedRecord)


def not_answered_type(data: dict) -> type[NotAnsweredRecord] | None:
    """The record type of the JSON form of an item that was not answered; None for an answered one."""
    for record_type in NOT_ANSWERED:
        if record_type.KEY in data:
            return record_type
    return None
