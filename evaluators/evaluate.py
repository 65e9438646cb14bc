"""Evaluate one task's items on one endpoint: per-item records, no aggregation yet.

A multiple-choice item costs one generation (with token logprobs) plus one
scoring request per option (option log-likelihood); with a base endpoint,
one more request scores the variant's answer under the base model.
"""

from __future__ import annotations

import asyncio
import math

from tqdm import tqdm

from evaluators.client import EndpointClient
from evaluators.items import MCItem, SummaryItem
from evaluators.metrics.classification import softmax
from evaluators.prompts import parse_answer, render_completion_prompt, render_mc_prompt
from evaluators.requests import Generation, Prompt, continuation_logprobs, generate
from evaluators.signals import compute_signals
from evaluators.tasks import Task

SUMMARY_INSTRUCTION = "Summarise the following text in one or two sentences.\n\n"


def generation_tokens(task: Task) -> int:
    """Max new tokens: the task's, else short for an MC answer and one or two sentences for a summary."""
    if task.max_tokens:
        return task.max_tokens
    return 128 if task.kind == "summarisation" else 32


def mc_prompt(task: Task, item: MCItem, shots: list[MCItem]) -> Prompt:
    if task.template == "completion":
        parts = [render_completion_prompt(s.question, s.options) + f" {s.answer}\n\n" for s in shots]
        return Prompt(text="".join(parts) + render_completion_prompt(item.question, item.options))
    messages = []
    for shot in shots:
        messages += [{"role": "user", "content": render_mc_prompt(shot.question, shot.options)},
                     {"role": "assistant", "content": shot.answer}]
    messages.append({"role": "user", "content": render_mc_prompt(item.question, item.options)})
    return Prompt(messages=tuple(messages))


def summary_prompt(task: Task, item: SummaryItem, shots: list[SummaryItem]) -> Prompt:
    if task.template == "completion":
        parts = [f"{SUMMARY_INSTRUCTION}{s.source}\nSummary: {s.reference}\n\n" for s in shots]
        return Prompt(text="".join(parts) + f"{SUMMARY_INSTRUCTION}{item.source}\nSummary:")
    messages = []
    for shot in shots:
        messages += [{"role": "user", "content": SUMMARY_INSTRUCTION + shot.source},
                     {"role": "assistant", "content": shot.reference}]
    messages.append({"role": "user", "content": SUMMARY_INSTRUCTION + item.source})
    return Prompt(messages=tuple(messages))


def _continuation(task: Task, prompt: Prompt, letter: str, text: str) -> str:
    option = letter if task.score_options_by == "letter" else text
    # Completion prompts end in "Answer:", so the continuation starts with a space.
    return option if prompt.is_chat else " " + option


async def score_options(client, task: Task, prompt: Prompt, item: MCItem, context_tokens) -> dict | None:
    scores = {}
    for letter, text in item.options.items():
        values = await continuation_logprobs(client, prompt, _continuation(task, prompt, letter, text),
                                             context_tokens)
        if values is None:
            return None
        scores[letter] = sum(values)
    return scores


def _mean(values) -> float | None:
    return sum(values) / len(values) if values else None


async def evaluate_mc_item(client, task: Task, item: MCItem, shots, base_client=None) -> dict:
    prompt = mc_prompt(task, item, shots)
    generation: Generation = await generate(client, prompt, generation_tokens(task))
    parsed = parse_answer(generation.text, item.options)
    option_logprobs = await score_options(client, task, prompt, item, generation.prompt_tokens)
    record = {
        "id": item.id, "kind": item.kind, "gold": item.answer, "response": generation.text,
        "choice": parsed.choice, "parsed_as": parsed.how, "correct": parsed.choice == item.answer,
        "abstained": parsed.abstained(item.options), "option_logprobs": option_logprobs,
        "has_logprobs": generation.token_logprobs is not None,
        "signals": compute_signals(generation.token_logprobs or [], generation.top_logprobs),
    }
    if option_logprobs:
        letters = list(option_logprobs)
        probs = softmax([option_logprobs[letter] for letter in letters])
        record["option_probs"] = dict(zip(letters, probs))
    if base_client is not None:
        record["signals"]["base_mean_logprob"] = await base_answer_logprob(base_client, prompt, generation)
    return record


async def base_answer_logprob(base_client, prompt: Prompt, generation: Generation) -> float:
    """Mean logprob of the variant's answer under the base model (NaN when it cannot be scored).

    The same request and token positions as the gateway's base_check (evaluators.crosscheck): the
    answer exactly as generated, located by the variant's own prompt-token count.
    """
    answer = generation.raw_text
    if not answer:
        return math.nan
    mean = _mean(await continuation_logprobs(base_client, prompt, answer, generation.prompt_tokens))
    return math.nan if mean is None else mean


async def evaluate_summary_item(client, task: Task, item: SummaryItem, shots, base_client=None) -> dict:
    prompt = summary_prompt(task, item, shots)
    generation = await generate(client, prompt, generation_tokens(task))
    record = {"id": item.id, "kind": "summary", "source": item.source, "reference": item.reference,
              "response": generation.text, "has_logprobs": generation.token_logprobs is not None,
              "signals": compute_signals(generation.token_logprobs or [], generation.top_logprobs)}
    if base_client is not None:
        record["signals"]["base_mean_logprob"] = await base_answer_logprob(base_client, prompt, generation)
    return record


async def evaluate_task(client: EndpointClient, task: Task, items: list, shots: list, *,
                        base_client: EndpointClient | None = None, label: str = "", progress: bool = True):
    """Records for every item, in item order, with a progress bar."""
    evaluate_one = evaluate_summary_item if task.kind == "summarisation" else evaluate_mc_item
    bar = tqdm(total=len(items), desc=f"{label}{task.name}", unit="item", disable=not progress, leave=False)

    async def run(item):
        record = await evaluate_one(client, task, item, shots, base_client)
        bar.update(1)
        return record

    try:
        return await asyncio.gather(*(run(item) for item in items))
    finally:
        bar.close()
