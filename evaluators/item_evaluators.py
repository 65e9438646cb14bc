"""One item on one endpoint, per task kind: the requests it costs and the typed record it becomes.

A multiple-choice item costs one generation (with token logprobs) plus one scoring request per option
(option log-likelihood); a summary or a free generation one generation. With a base endpoint, one more
request scores the variant's answer under the base model. The prompt is built by the caller
(evaluators/task_kinds.py `task_prompt`, or a shortened one under the over-long policy).
"""

from __future__ import annotations

import math

from evaluators.answers import mc_label, parse_task_answer, score_generation
from evaluators.items import GenItem, MCItem, SummaryItem
from evaluators.metrics.classification import softmax
from evaluators.records import GenerationFields, GenerationRecord, MCRecord, SummaryRecord
from evaluators.requests import Decoding, Generation, Prompt, base_check_logprobs, continuation_logprobs, generate
from evaluators.thinking import ThinkingControl
from moeprune.reliability.crosscheck import BASE_SIGNALS, base_check_signals
from moeprune.reliability.signals import compute_signals


def task_decoding(task) -> Decoding:
    """The task's sampling settings; `task.max_tokens` is already defaulted (by its kind: 32 for MC answers)."""
    decoding = task.decoding
    return Decoding(task.max_tokens, decoding.temperature, decoding.top_p, decoding.retries_on_empty)


def _continuation(task, prompt: Prompt, letter: str, text: str) -> str:
    option = letter if task.score_options_by == "letter" else text
    # Completion prompts end in "Answer:", so the continuation starts with a space.
    return option if prompt.is_chat else " " + option


async def score_options(
    client, task, prompt: Prompt, item: MCItem, context_tokens, thinking: ThinkingControl
) -> dict | None:
    scores = {}
    for letter, text in item.options.items():
        values = await continuation_logprobs(
            client, prompt, _continuation(task, prompt, letter, text), context_tokens, thinking
        )
        if values is None:
            return None
        scores[letter] = sum(values)
    return scores


def generation_fields(generation: Generation) -> GenerationFields:
    return GenerationFields(
        generation.text,
        generation.token_logprobs is not None,
        generation.finish_reason,
        generation.reasoning,
        generation.attempts,
    )


def _signals(generation: Generation) -> dict:
    return compute_signals(generation.token_logprobs or [], generation.top_logprobs)


async def base_answer_signals(
    base_client, prompt: Prompt, generation: Generation, thinking: ThinkingControl = ThinkingControl()
) -> dict[str, float]:
    """`base_mean_logprob` and `base_min_logprob` of the variant's answer under the base model (both NaN when it
    cannot be scored).

    The same request, token positions and end-of-answer term as the gateway's base check
    (moeprune.reliability.crosscheck): the answer exactly as generated, located by the variant's own prompt-token
    count, its end scored when the variant ended it.
    """
    values = await base_check_logprobs(base_client, prompt, generation, thinking) if generation.raw_text else None
    return base_check_signals(values) or {name: math.nan for name in BASE_SIGNALS}


async def _base_checked(record, base_client, prompt: Prompt, generation: Generation, thinking: ThinkingControl):
    if base_client is not None:
        record.signals.update(await base_answer_signals(base_client, prompt, generation, thinking))
    return record


async def evaluate_mc_item(
    client, task, item: MCItem, shots, base_client, thinking: ThinkingControl, prompt: Prompt
) -> MCRecord:
    generation: Generation = await generate(client, prompt, task_decoding(task), thinking)
    parsed = parse_task_answer(task, generation.text, item)
    option_logprobs = await score_options(client, task, prompt, item, generation.prompt_tokens, thinking)
    option_probs = None
    if option_logprobs:
        letters = list(option_logprobs)
        option_probs = dict(zip(letters, softmax([option_logprobs[letter] for letter in letters])))
    record = MCRecord(
        item.id,
        item.kind,
        item.answer,
        generation_fields(generation),
        parsed.choice,
        parsed.how,
        parsed.choice == item.answer,
        parsed.abstained(item.options),
        mc_label(parsed, item),
        option_logprobs,
        option_probs,
        signals=_signals(generation),
    )
    return await _base_checked(record, base_client, prompt, generation, thinking)


async def evaluate_summary_item(
    client, task, item: SummaryItem, shots, base_client, thinking: ThinkingControl, prompt: Prompt
) -> SummaryRecord:
    generation = await generate(client, prompt, task_decoding(task), thinking)
    record = SummaryRecord(
        item.id, item.source, item.reference, generation_fields(generation), signals=_signals(generation)
    )
    return await _base_checked(record, base_client, prompt, generation, thinking)


async def evaluate_generation_item(
    client, task, item: GenItem, shots, base_client, thinking: ThinkingControl, prompt: Prompt
) -> GenerationRecord:
    """A free generation (MedINST32, Med-HALT JSON answers), scored by the task's extractor and metrics."""
    generation = await generate(client, prompt, task_decoding(task), thinking)
    record = GenerationRecord(
        item.id,
        item.kind,
        item.target,
        score_generation(task, item, generation.text),
        generation_fields(generation),
        signals=_signals(generation),
    )
    return await _base_checked(record, base_client, prompt, generation, thinking)
