"""The task kinds: one registry of how each kind of task is prompted, answered, recorded and aggregated.

A task's kind follows from its loader (evaluators/loaders LOADER_KINDS) and is written in the card's
`tasks[name].kind`. Everything that differs by kind is looked up here, never by comparing kind strings:
- `prompt`: the contract prompt, where the task file brings no templates (evaluators/kind_prompts.py);
- `evaluate`: one item on one endpoint, returning the kind's `record_type` (evaluators/item_evaluators.py);
- `metrics`: the task's answered records (their JSON form) -> metrics with confidence intervals;
- `default_max_tokens`: new tokens when the task sets none;
- `summary_scored`: whether the summary scorers (SummaC, BERTScore, the claim judge) score its answers.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from evaluators.item_evaluators import evaluate_generation_item, evaluate_mc_item, evaluate_summary_item
from evaluators.kind_prompts import mc_prompt, summary_prompt
from evaluators.records import AnsweredRecord, GenerationRecord, MCRecord, SummaryRecord
from evaluators.requests import Prompt
from evaluators.summary_quality import quality_metrics
from evaluators.task_metrics import generation_metrics, mc_metrics, summary_metrics
from evaluators.task_prompts import render
from moeprune.errors import UserError


@dataclass(frozen=True)
class TaskKind:
    name: str
    record_type: type[AnsweredRecord]
    prompt: Callable[[Any, Any, list], Prompt]  # (task, item, shots)
    evaluate: Callable[..., Awaitable[AnsweredRecord]]  # (client, task, item, shots, base_client, thinking, prompt)
    metrics: Callable[[Any, list[dict], int], dict]  # (task, answered records' JSON, seed)
    default_max_tokens: int
    summary_scored: bool = False


TASK_KINDS: dict[str, TaskKind] = {
    kind.name: kind
    for kind in (
        TaskKind(
            "multiple_choice",
            MCRecord,
            mc_prompt,
            evaluate_mc_item,
            lambda task, records, seed: mc_metrics(records, seed),
            default_max_tokens=32,
        ),
        TaskKind(
            "summarisation",
            SummaryRecord,
            summary_prompt,
            evaluate_summary_item,
            lambda task, records, seed: {**summary_metrics(records, seed), **quality_metrics(records, seed)},
            default_max_tokens=128,
            summary_scored=True,
        ),
        # A generation task's items carry named fields its own templates fill (task files always give them);
        # without templates it falls back to the multiple-choice contract prompt, as it always has.
        TaskKind(
            "generation",
            GenerationRecord,
            mc_prompt,
            evaluate_generation_item,
            lambda task, records, seed: generation_metrics(records, seed, task.metrics),
            default_max_tokens=128,
        ),
    )
}


def task_kind(name: str) -> TaskKind:
    """The registered kind called `name`; a UserError naming the known kinds for any other."""
    if name not in TASK_KINDS:
        raise UserError(f"unknown task kind {name!r}; known kinds: {', '.join(TASK_KINDS)}")
    return TASK_KINDS[name]


def task_prompt(task, item, shots) -> Prompt:
    """The task file's own templates (prompt style "messages"), else the contract prompt of its kind."""
    prompt = render(task, item, shots)
    if prompt is not None:
        return prompt
    return task_kind(task.kind).prompt(task, item, shots)
