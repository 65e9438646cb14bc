"""Evaluate one task's items on one endpoint: per-item typed records (evaluators/records.py), no aggregation yet.

What one item costs and becomes depends on the task's kind (evaluators/task_kinds.py,
evaluators/item_evaluators.py).

One item never stops the run: an item the endpoint refuses (HTTP 4xx/5xx
after the client's retries, a timeout) becomes a `FailedRecord` with the
reason; a prompt refused as longer than the endpoint's context goes through
the task's over-long policy (evaluators/overlong.py) and may become a
`SkippedRecord`. Failed and skipped items are never cached as answers, so a rerun
asks for exactly those again (the finished ones come from the cache). Only an
endpoint that cannot be reached at all stops the run (every finished request
is cached; the rerun resumes).

At most `concurrency` items are in flight at once, each sending its requests
one after another, so the endpoint sees the same number of requests in flight
as before, items finish roughly in order and the progress bar moves with the
work (it also shows the requests sent and the items failed so far).
"""

from __future__ import annotations

import asyncio

from tqdm import tqdm

from evaluators.client import EndpointClient, EndpointError
from evaluators.gate_domains import GateAssignment, with_gate
from evaluators.item_evaluators import base_answer_signals  # noqa: F401  (its home before the kinds' registry)
from evaluators.overlong import MAX_TRIES, cut
from evaluators.records import AnsweredRecord, FailedRecord, ItemRecord, SkippedRecord
from evaluators.requests import Prompt
from evaluators.task_kinds import task_kind, task_prompt
from evaluators.thinking import ThinkingControl


def short_reason(exc: EndpointError) -> str:
    """The reason a failed item is counted under in the card (the full message stays in items.jsonl)."""
    if exc.context_overflow:
        return "over-long: the endpoint refused the prompt as longer than its context"
    if exc.status is not None:
        return f"HTTP {exc.status}"
    parts = str(exc).split(": ")
    return f"no answer ({parts[1]})" if len(parts) > 2 else "no answer"


def failed_record(item, reason: str, exc: EndpointError | None = None) -> FailedRecord:
    return FailedRecord(item.id, reason, str(exc)[:500] if exc is not None else None)


class ItemRunner:
    """Evaluates the items of one task on one endpoint under the task's over-long policy."""

    def __init__(
        self,
        client,
        task,
        shots,
        base_client=None,
        thinking: ThinkingControl = ThinkingControl(),
        gate: GateAssignment | None = None,
    ):
        self.client, self.task, self.shots = client, task, shots
        self.base_client, self.thinking, self.gate = base_client, thinking, gate
        self.evaluate_one = task_kind(task.kind).evaluate

    async def _once(self, item, prompt: Prompt | None = None) -> AnsweredRecord:
        prompt = prompt or task_prompt(self.task, item, self.shots)
        record = await self.evaluate_one(
            self.client, self.task, item, self.shots, self.base_client, self.thinking, prompt
        )
        # The item's own domain where it names one, else its task's (docs/evaluators.md, Labels).
        record.domain = getattr(item, "domain", None) or self.task.domain
        return with_gate(record, self.gate, prompt)

    async def run(self, item) -> ItemRecord:
        try:
            return await self._once(item)
        except EndpointError as exc:
            if exc.unreachable:
                raise
            if not exc.context_overflow:
                return failed_record(item, short_reason(exc), exc)
            return await self._overlong(item, exc)

    async def _overlong(self, item, first: EndpointError) -> ItemRecord:
        policy = self.task.overlong
        if policy.policy == "skip":
            return SkippedRecord(
                item.id,
                f"over-long: skipped by the task's policy (longer than the endpoint's context{self._context_note()})",
                str(first)[:500],
            )
        prompt = task_prompt(self.task, item, self.shots)
        last, tried = first, 0
        for attempt in range(1, MAX_TRIES + 1):
            shorter = cut(
                item, prompt, policy.field, policy.side, attempt, self.client.max_model_len, self.task.max_tokens
            )
            if isinstance(shorter, str):
                return failed_record(item, shorter, last)
            if shorter.cut_chars == 0:
                continue  # this try's target is not shorter than the prompt: aim lower
            tried += 1
            try:
                record = await self._once(shorter.item, shorter.prompt)
            except EndpointError as exc:
                if exc.unreachable:
                    raise
                if not exc.context_overflow:
                    return failed_record(item, short_reason(exc), exc)
                last = exc
                continue
            record.truncated = {
                "side": policy.side,
                "field": policy.field,
                "kept_chars": shorter.kept_chars,
                "cut_chars": shorter.cut_chars,
                "tries": tried,
            }
            return record
        return failed_record(item, f"over-long: still longer than the context after {tried} truncations", last)

    def _context_note(self) -> str:
        length = self.client.max_model_len
        return f", max_model_len {length}" if length else ""


async def evaluate_task(
    client: EndpointClient,
    task,
    items: list,
    shots: list,
    *,
    base_client: EndpointClient | None = None,
    label: str = "",
    progress: bool = True,
    thinking: ThinkingControl = ThinkingControl(),
    gate: GateAssignment | None = None,
) -> list[ItemRecord]:
    """Records for every item, in item order (failed and skipped ones included, marked), with a progress bar."""
    runner = ItemRunner(client, task, shots, base_client, thinking, gate)
    window = asyncio.Semaphore(getattr(client, "concurrency", 4))
    bar = tqdm(total=len(items), desc=f"{label}{task.name}", unit="item", disable=not progress, leave=False)
    sent_before = _sent(client, base_client)
    failed = 0

    async def run(item):
        nonlocal failed
        async with window:
            record = await runner.run(item)
        failed += not record.answered
        bar.update(1)
        bar.set_postfix(requests=_sent(client, base_client) - sent_before, failed=failed, refresh=False)
        return record

    try:
        return await asyncio.gather(*(run(item) for item in items))
    finally:
        bar.close()


def _sent(*clients) -> int:
    return sum(getattr(client, "sent", 0) for client in clients if client is not None)
