"""The optional cross-checks of an answer, as requests and as arithmetic, shared by evaluators and gateway.

Base cross-check: the answer is scored under the unpruned base with prompt
logprobs, and ONE rule locates the answer's tokens, correct at the
prompt/answer boundary:
- chat: the conversation plus the answer as an assistant turn that is
  continued (`continue_final_message`), scored with vLLM's `prompt_logprobs`;
  the answer's tokens are the positions from `prompt_tokens` on, where
  `prompt_tokens` is the engine's own count of the prompt with its generation
  prompt (the variant's `usage.prompt_tokens`: base and variant share a
  tokenizer). The chat template's generation prompt ends the prompt, so the
  re-tokenised answer starts exactly there, however differently the answer's
  text tokenises on its own or as it was generated.
- completions: prompt + answer with `echo` and `logprobs: 0`; the answer's
  tokens are those whose text offset lies in the answer's characters. A token
  that straddles the boundary (the prompt ends mid-word) belongs to the prompt.
The answer's end counts too. A variant that ended its answer itself (finish
reason `stop` from an end-of-sequence token, not from a client's stop string)
also claimed that nothing follows; the one token the check request generates
gives the base's view of that: when the base would also stop there, its
logprob of stopping; when it would go on, at most log(1 - p) of the token it
would go on with (the stop has at most the rest of the mass). A pruned model
that lost the tokens of "I don't know" and answers "I don" is as plausible to
the base token by token; its end is not.
Self-consistency: `n` resamples at temperature >= 0.7, compared with the answer
after normalisation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from moeprune.reliability.refusal import normalise

AGREEMENT_FLOOR = 0.5  # below this share of resamples agreeing with the answer: `inconsistent`
CONSISTENCY_MIN_TEMPERATURE = 0.7


def base_check_request(answer: str, messages: list | None = None, prompt: str | None = None) -> dict | None:
    """The base engine's request body (no `model`), or None when the answer cannot be scored."""
    if not answer:
        return None
    body: dict[str, Any] = {"max_tokens": 1, "temperature": 0}
    if messages is not None:
        body.update(
            messages=[*messages, {"role": "assistant", "content": answer}],
            prompt_logprobs=0,
            logprobs=True,  # the one generated token: the base's view of the answer's end (answer_end_logprob)
            add_generation_prompt=False,
            continue_final_message=True,
        )
        return body
    if isinstance(prompt, str):
        body.update(prompt=prompt + answer, logprobs=0, echo=True)
        return body
    return None  # token-id or batched prompts: nothing to splice the answer onto


def answer_logprobs(
    response: dict, answer: str, prompt_tokens: int | None = None, prompt: str | None = None
) -> list[float] | None:
    """Logprobs of the answer's tokens in a base-check response (see the module docstring for the rule)."""
    choice = (response.get("choices") or [{}])[0]
    if prompt is None:  # chat
        entries = response.get("prompt_logprobs") or choice.get("prompt_logprobs")
        if not entries or not prompt_tokens or len(entries) <= prompt_tokens:
            return None
        answer_values: list[float] = []
        for entry in entries[prompt_tokens:]:
            if not entry:
                return None
            answer_values.append(next(iter(entry.values()))["logprob"])
        return answer_values
    logprobs = choice.get("logprobs") or {}
    offsets, values = logprobs.get("text_offset"), logprobs.get("token_logprobs")
    if not offsets or not values:
        return None
    start, end = len(prompt), len(prompt) + len(answer)
    picked = [lp for offset, lp in zip(offsets, values) if start <= offset < end]
    if not picked or any(lp is None for lp in picked):
        return None
    return picked


# A stop the base gives no room to is still a number: the floor keeps the mean finite (e^-20 ~ 2e-9).
END_LOGPROB_FLOOR = -20.0


def answer_ended(finish_reason: str | None, stop_reason: object = None) -> bool:
    """Whether the variant ended its answer itself: `stop` from an end-of-sequence token. A string
    `stop_reason` is a client's stop string (vLLM): the answer was cut there, not ended by the model."""
    return finish_reason == "stop" and not isinstance(stop_reason, str)


def answer_end_logprob(response: dict, answer: str, prompt: str | None = None) -> float | None:
    """The base's logprob of ending right after the answer, read from the check's one generated token."""
    choice = (response.get("choices") or [{}])[0]
    logprobs = choice.get("logprobs") or {}
    if prompt is None:  # chat: logprobs.content holds the generated token only
        content = logprobs.get("content") or []
        value = content[-1].get("logprob") if content else None
    else:  # completions with echo: the prompt's and the answer's tokens, then the generated one
        offsets, values = logprobs.get("text_offset") or [], logprobs.get("token_logprobs") or []
        value = values[-1] if offsets and values and offsets[-1] >= len(prompt) + len(answer) else None
    if not isinstance(value, (int, float)) or math.isnan(value):
        return None
    if choice.get("finish_reason") == "stop":
        return max(float(value), END_LOGPROB_FLOOR)
    rest = -math.expm1(min(float(value), 0.0))  # 1 - p of the token the base would go on with
    return max(math.log(rest), END_LOGPROB_FLOOR) if rest > 0 else END_LOGPROB_FLOOR


def base_check_values(
    response: dict, answer: str, ended: bool, prompt_tokens: int | None = None, prompt: str | None = None
) -> list[float] | None:
    """The base's logprobs of the answer's tokens, then of its end when the variant `ended` it."""
    values = answer_logprobs(response, answer, prompt_tokens=prompt_tokens, prompt=prompt)
    if values is None:
        return None
    end = answer_end_logprob(response, answer, prompt) if ended else None
    return values if end is None else [*values, end]


BASE_SIGNALS = ("base_mean_logprob", "base_min_logprob")


def base_check_signals(values: list[float] | None) -> dict[str, float]:
    """The base cross-check's signals (BASE_SIGNALS): the mean and the least of the answer's logprobs (its end
    included) under the base; {} when there are none."""
    if not values:
        return {}
    return dict(zip(BASE_SIGNALS, (sum(values) / len(values), min(values))))


# Sampling fields a resample keeps from the original request; everything else is the check's own.
RESAMPLE_FIELDS = (
    "model",
    "messages",
    "prompt",
    "top_p",
    "top_k",
    "min_p",
    "stop",
    "stop_token_ids",
    "presence_penalty",
    "frequency_penalty",
    "repetition_penalty",
    "logit_bias",
    "response_format",
    "chat_template_kwargs",
    "reasoning_effort",
    "add_generation_prompt",
    "continue_final_message",
    "cache_salt",
    "skip_special_tokens",
    "spaces_between_special_tokens",
    "include_stop_str_in_output",
)


def consistency_request(body: dict, samples: int, max_tokens: int) -> dict:
    """The resampling request: `samples` fresh answers to the first prompt, at temperature >= 0.7."""
    probe = {key: body[key] for key in RESAMPLE_FIELDS if key in body}
    prompt = probe.get("prompt")
    if isinstance(prompt, list) and prompt and isinstance(prompt[0], (str, list)):
        probe["prompt"] = prompt[0]  # the verdict judges the first choice: resample its prompt only
    probe.update(
        n=samples,
        max_tokens=max_tokens,
        temperature=max(CONSISTENCY_MIN_TEMPERATURE, float(body.get("temperature") or 0)),
    )
    return probe


def agreement(texts: Sequence[str | None], answer: str) -> float | None:
    """Share of resampled texts equal to the answer after normalisation; None without resamples."""
    if not texts:
        return None
    target = normalise(answer)
    return sum(normalise(text or "") == target for text in texts) / len(texts)
