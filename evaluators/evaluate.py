"""Evaluate one task's items on one endpoint: per-item records, no aggregation yet.

A multiple-choice item costs one generation (with token logprobs) plus one
scoring request per option (option log-likelihood); with a base endpoint,
one more request scores the variant's answer under the base model.

One item never stops the run: an item the endpoint refuses (HTTP 4xx/5xx
after the client's retries, a timeout) becomes a record with `failed` and the
reason; a prompt refused as longer than the endpoint's context goes through
the task's over-long policy (evaluators/overlong.py) and may become
`skipped`. Failed and skipped items are never cached as answers, so a rerun
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
import math

from tqdm import tqdm

from evaluators.answers import mc_label, parse_task_answer, score_generation
from evaluators.client import EndpointClient, EndpointError
from evaluators.gate_domains import GateAssignment, with_gate
from evaluators.items import GenItem, MCItem, SummaryItem
from evaluators.metrics.classification import softmax
from evaluators.overlong import MAX_TRIES, cut
from evaluators.prompts import render_completion_prompt, render_mc_prompt
from evaluators.requests import Decoding, Generation, Prompt, continuation_logprobs, generate
from evaluators.task_prompts import render
from evaluators.thinking import ThinkingControl
from moeprune.reliability.signals import compute_signals

SUMMARY_INSTRUCTION = "Summarise the following text in one or two sentences.\n\n"
FAILED, SKIPPED = "failed", "skipped"


def task_decoding(task) -> Decoding:
    """The task's sampling settings; `task.max_tokens` is already defaulted (32 for MC answers, else 128)."""
    decoding = task.decoding
    return Decoding(task.max_tokens, decoding.temperature, decoding.top_p, decoding.retries_on_empty)


def mc_prompt(task, item: MCItem, shots: list[MCItem]) -> Prompt:
    if task.template == "completion":
        parts = [render_completion_prompt(s.question, s.options) + f" {s.answer}\n\n" for s in shots]
        return Prompt(text="".join(parts) + render_completion_prompt(item.question, item.options))
    messages = []
    for shot in shots:
        messages += [{"role": "user", "content": render_mc_prompt(shot.question, shot.options)},
                     {"role": "assistant", "content": shot.answer}]
    messages.append({"role": "user", "content": render_mc_prompt(item.question, item.options)})
    return Prompt(messages=tuple(messages))


def summary_prompt(task, item: SummaryItem, shots: list[SummaryItem]) -> Prompt:
    if task.template == "completion":
        parts = [f"{SUMMARY_INSTRUCTION}{s.source}\nSummary: {s.reference}\n\n" for s in shots]
        return Prompt(text="".join(parts) + f"{SUMMARY_INSTRUCTION}{item.source}\nSummary:")
    messages = []
    for shot in shots:
        messages += [{"role": "user", "content": SUMMARY_INSTRUCTION + shot.source},
                     {"role": "assistant", "content": shot.reference}]
    messages.append({"role": "user", "content": SUMMARY_INSTRUCTION + item.source})
    return Prompt(messages=tuple(messages))


def task_prompt(task, item, shots) -> Prompt:
    """The task file's own templates (prompt style "messages"), else the contract prompt of its kind."""
    prompt = render(task, item, shots)
    if prompt is not None:
        return prompt
    return summary_prompt(task, item, shots) if task.kind == "summarisation" else mc_prompt(task, item, shots)


def _continuation(task, prompt: Prompt, letter: str, text: str) -> str:
    option = letter if task.score_options_by == "letter" else text
    # Completion prompts end in "Answer:", so the continuation starts with a space.
    return option if prompt.is_chat else " " + option


async def score_options(client, task, prompt: Prompt, item: MCItem, context_tokens,
                        thinking: ThinkingControl) -> dict | None:
    scores = {}
    for letter, text in item.options.items():
        values = await continuation_logprobs(client, prompt, _continuation(task, prompt, letter, text),
                                             context_tokens, thinking)
        if values is None:
            return None
        scores[letter] = sum(values)
    return scores


def _mean(values) -> float | None:
    return sum(values) / len(values) if values else None


def _generation_fields(generation: Generation) -> dict:
    fields = {"response": generation.text, "has_logprobs": generation.token_logprobs is not None,
              "finish_reason": generation.finish_reason}
    if generation.reasoning is not None:
        fields["reasoning"] = generation.reasoning
    if generation.attempts > 1:
        fields["attempts"] = generation.attempts
    return fields


async def evaluate_mc_item(client, task, item: MCItem, shots, base_client=None,
                           thinking: ThinkingControl = ThinkingControl(), prompt: Prompt | None = None) -> dict:
    prompt = prompt or task_prompt(task, item, shots)
    generation: Generation = await generate(client, prompt, task_decoding(task), thinking)
    parsed = parse_task_answer(task, generation.text, item)
    option_logprobs = await score_options(client, task, prompt, item, generation.prompt_tokens, thinking)
    record = {
        "id": item.id, "kind": item.kind, "gold": item.answer, **_generation_fields(generation),
        "choice": parsed.choice, "parsed_as": parsed.how, "correct": parsed.choice == item.answer,
        "abstained": parsed.abstained(item.options), "label": mc_label(parsed, item),
        "option_logprobs": option_logprobs,
        "signals": compute_signals(generation.token_logprobs or [], generation.top_logprobs),
    }
    if option_logprobs:
        letters = list(option_logprobs)
        probs = softmax([option_logprobs[letter] for letter in letters])
        record["option_probs"] = dict(zip(letters, probs))
    if base_client is not None:
        record["signals"]["base_mean_logprob"] = await base_answer_logprob(base_client, prompt, generation,
                                                                           thinking)
    return record


async def base_answer_logprob(base_client, prompt: Prompt, generation: Generation,
                              thinking: ThinkingControl = ThinkingControl()) -> float:
    """Mean logprob of the variant's answer under the base model (NaN when it cannot be scored).

    The same request and token positions as the gateway's base_check (moeprune.reliability.crosscheck): the
    answer exactly as generated, located by the variant's own prompt-token count.
    """
    answer = generation.raw_text
    if not answer:
        return math.nan
    mean = _mean(await continuation_logprobs(base_client, prompt, answer, generation.prompt_tokens, thinking))
    return math.nan if mean is None else mean


async def evaluate_summary_item(client, task, item: SummaryItem, shots, base_client=None,
                                thinking: ThinkingControl = ThinkingControl(), prompt: Prompt | None = None) -> dict:
    prompt = prompt or task_prompt(task, item, shots)
    generation = await generate(client, prompt, task_decoding(task), thinking)
    record = {"id": item.id, "kind": "summary", "source": item.source, "reference": item.reference,
              **_generation_fields(generation),
              "signals": compute_signals(generation.token_logprobs or [], generation.top_logprobs)}
    if base_client is not None:
        record["signals"]["base_mean_logprob"] = await base_answer_logprob(base_client, prompt, generation,
                                                                           thinking)
    return record


async def evaluate_generation_item(client, task, item: GenItem, shots, base_client=None,
                                   thinking: ThinkingControl = ThinkingControl(), prompt: Prompt | None = None) -> dict:
    """A free generation (MedINST32, Med-HALT JSON answers), scored by the task's extractor and metrics."""
    prompt = prompt or task_prompt(task, item, shots)
    generation = await generate(client, prompt, task_decoding(task), thinking)
    record = {**score_generation(task, item, generation.text), **_generation_fields(generation),
              "signals": compute_signals(generation.token_logprobs or [], generation.top_logprobs)}
    if base_client is not None:
        record["signals"]["base_mean_logprob"] = await base_answer_logprob(base_client, prompt, generation,
                                                                           thinking)
    return record


EVALUATE_BY_KIND = {"multiple_choice": evaluate_mc_item, "summarisation": evaluate_summary_item,
                    "generation": evaluate_generation_item}


def short_reason(exc: EndpointError) -> str:
    """The reason a failed item is counted under in the card (the full message stays in items.jsonl)."""
    if exc.context_overflow:
        return "over-long: the endpoint refused the prompt as longer than its context"
    if exc.status is not None:
        return f"HTTP {exc.status}"
    parts = str(exc).split(": ")
    return f"no answer ({parts[1]})" if len(parts) > 2 else "no answer"


def failed_record(item, reason: str, exc: EndpointError | None = None) -> dict:
    record = {"id": item.id, FAILED: reason}
    if exc is not None:
        record["error"] = str(exc)[:500]
    return record


class ItemRunner:
    """Evaluates the items of one task on one endpoint under the task's over-long policy."""

    def __init__(self, client, task, shots, base_client=None, thinking: ThinkingControl = ThinkingControl(),
                 gate: GateAssignment | None = None):
        self.client, self.task, self.shots = client, task, shots
        self.base_client, self.thinking, self.gate = base_client, thinking, gate
        self.evaluate_one = EVALUATE_BY_KIND[task.kind]

    async def _once(self, item, prompt: Prompt | None = None) -> dict:
        prompt = prompt or task_prompt(self.task, item, self.shots)
        record = await self.evaluate_one(self.client, self.task, item, self.shots, self.base_client,
                                         self.thinking, prompt)
        # The item's own domain where it names one, else its task's (docs/evaluators.md, Labels).
        record["domain"] = getattr(item, "domain", None) or self.task.domain
        return with_gate(record, self.gate, prompt)

    async def run(self, item) -> dict:
        try:
            return await self._once(item)
        except EndpointError as exc:
            if exc.unreachable:
                raise
            if not exc.context_overflow:
                return failed_record(item, short_reason(exc), exc)
            return await self._overlong(item, exc)

    async def _overlong(self, item, first: EndpointError) -> dict:
        policy = self.task.overlong
        if policy.policy == "skip":
            return {"id": item.id, SKIPPED: "over-long: skipped by the task's policy (longer than the "
                                            f"endpoint's context{self._context_note()})", "error": str(first)[:500]}
        prompt = task_prompt(self.task, item, self.shots)
        last, tried = first, 0
        for attempt in range(1, MAX_TRIES + 1):
            shorter = cut(item, prompt, policy.field, policy.side, attempt, self.client.max_model_len,
                          self.task.max_tokens)
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
            record["truncated"] = {"side": policy.side, "field": policy.field, "kept_chars": shorter.kept_chars,
                                   "cut_chars": shorter.cut_chars, "tries": tried}
            return record
        return failed_record(item, f"over-long: still longer than the context after {tried} truncations", last)

    def _context_note(self) -> str:
        length = self.client.max_model_len
        return f", max_model_len {length}" if length else ""


async def evaluate_task(client: EndpointClient, task, items: list, shots: list, *,
                        base_client: EndpointClient | None = None, label: str = "", progress: bool = True,
                        thinking: ThinkingControl = ThinkingControl(),
                        gate: GateAssignment | None = None) -> list[dict]:
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
        failed += FAILED in record or SKIPPED in record
        bar.update(1)
        bar.set_postfix(requests=_sent(client, base_client) - sent_before, failed=failed, refresh=False)
        return record

    try:
        return await asyncio.gather(*(run(item) for item in items))
    finally:
        bar.close()


def _sent(*clients) -> int:
    return sum(getattr(client, "sent", 0) for client in clients if client is not None)
