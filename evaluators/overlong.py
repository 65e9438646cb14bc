"""A task's over-long-prompt policy, applied when the endpoint refuses a prompt as longer than its context.

Per task (`overlong` in the task file): `skip` counts the item as skipped
(in the card: `n_skipped`, with the reason); `truncate` cuts the item's
`field` (its context, source, ...; without a field, the last user message of
a chat prompt or the text of a completion prompt) from the stated `side`
(`left` keeps the end, `right` keeps the start) and asks again.

How much to cut is decided without a tokenizer, and deterministically (the
same item is cut the same way for the base, the variant and a rerun, so
their requests and cache lines match): the prompt is aimed at
`(max_model_len - min(max_tokens, max_model_len / 2)) x chars_per_token` characters, with
chars_per_token 4.0 on the first try and 20% less on each further try (up
to 8), where max_model_len is what the endpoint's /v1/models reports. An
endpoint that reports no context length gets the field halved on each try.
What is still refused after the last try counts as failed, with the reason.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from evaluators.requests import Prompt

FIRST_CHARS_PER_TOKEN = 4.0
SHRINK_PER_TRY = 0.8
MAX_TRIES = 8


@dataclass(frozen=True)
class Cut:
    item: object  # the item with its field cut (the original item when the prompt was cut directly)
    prompt: Prompt | None  # the cut prompt when there is no field to cut (None: render the cut item)
    kept_chars: int
    cut_chars: int


def target_chars(attempt: int, context_length: int | None, max_tokens: int, prompt_chars: int) -> int:
    if context_length:
        # Room for the answer: vLLM clamps the new tokens to what the prompt leaves, so at most half the
        # context is held back, however large the task's max_tokens.
        reserved = min(max_tokens, context_length // 2)
        return int((context_length - reserved) * FIRST_CHARS_PER_TOKEN * SHRINK_PER_TRY ** (attempt - 1))
    return int(prompt_chars * 0.5**attempt)


def cut_text(text: str, keep: int, side: str) -> str:
    return text[len(text) - keep :] if side == "left" else text[:keep]


def field_text(item, name: str) -> str | None:
    """The item's field `name`: an attribute, or an entry of its `fields` mapping (generation items)."""
    value = getattr(item, name, None)
    if value is None and isinstance(getattr(item, "fields", None), dict):
        value = item.fields.get(name)
    return value if isinstance(value, str) else None


def with_field(item, name: str, value: str):
    if hasattr(item, name) and isinstance(getattr(item, name), str):
        return dataclasses.replace(item, **{name: value})
    return dataclasses.replace(item, fields={**item.fields, name: value})


def cut(
    item, prompt: Prompt, field: str | None, side: str, attempt: int, context_length: int | None, max_tokens: int
) -> Cut | str:
    """The item (or prompt) cut for try `attempt` (1-based), or the reason it cannot be made to fit."""
    if field is not None:
        text = field_text(item, field)
        if text is None:
            return f"over-long: the task's overlong.field {field!r} is not a text field of its items"
    elif prompt.is_chat:
        users = [i for i, message in enumerate(prompt.messages) if message.get("role") == "user"]
        text = str(prompt.messages[users[-1]].get("content") or "") if users else ""
    else:
        text = prompt.text or ""
    rest = prompt.chars - len(text)
    keep = target_chars(attempt, context_length, max_tokens, prompt.chars) - rest
    if context_length is None:
        keep = int(len(text) * 0.5**attempt)
    if keep <= 0:
        return "over-long: the prompt is longer than the context even without the part that may be cut"
    keep = min(keep, len(text))
    shorter = cut_text(text, keep, side)
    if field is not None:
        return Cut(with_field(item, field, shorter), None, keep, len(text) - keep)
    if prompt.is_chat:
        messages = list(prompt.messages)
        messages[users[-1]] = {**messages[users[-1]], "content": shorter}
        return Cut(item, Prompt(messages=tuple(messages)), keep, len(text) - keep)
    return Cut(item, Prompt(text=shorter), keep, len(text) - keep)
