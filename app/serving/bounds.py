"""The bounds of one request that depend on the settings, the variant or the key.

The schema (app/api/schemas.py) has already refused unknown fields and
out-of-range values. Here: how many sequences the request asks for (prompts x
n, what admission counts), `max_tokens` always forwarded and capped (vLLM
otherwise generates up to the context length), echo and prompt logprobs only
for evaluation, media content parts only for multimodal variants.
"""

from __future__ import annotations

from app.config.settings import Settings
from app.config.variants import Variant
from app.errors import OpenAIError

# A prompt given as token ids counts this many characters per token against max_echo_prompt_chars.
CHARS_PER_TOKEN = 4


def prompt_count(prompt: object) -> int:
    """A string or one token-id list is one prompt; a list of strings or of token lists is a batch."""
    if isinstance(prompt, list) and prompt and isinstance(prompt[0], (str, list)):
        return len(prompt)
    return 1


def prompt_chars(body: dict, chat: bool) -> int:
    """The prompt's size in characters (token ids at CHARS_PER_TOKEN each): what prompt logprobs cost."""
    if chat:
        total = 0
        for message in body.get("messages") or []:
            content = message.get("content")
            if isinstance(content, str):
                total += len(content)
            elif isinstance(content, list):
                total += sum(len(part.get("text") or "") for part in content)
        return total
    prompt = body.get("prompt")
    prompts = prompt if isinstance(prompt, list) and prompt and isinstance(prompt[0], (str, list)) else [prompt]
    return sum(len(p) if isinstance(p, str) else CHARS_PER_TOKEN * len(p or ()) for p in prompts)


def count_sequences(body: dict, chat: bool, settings: Settings) -> int:
    n = body.get("n") or 1
    if n > settings.max_n:
        raise OpenAIError(400, f"n={n} is above this gateway's limit of {settings.max_n}", param="n", code="n_exceeded")
    prompts = 1 if chat else prompt_count(body.get("prompt"))
    if prompts > settings.max_prompts_per_request:
        raise OpenAIError(
            400,
            f"the prompt list holds {prompts} prompts; this gateway accepts at most "
            f"{settings.max_prompts_per_request} per request",
            param="prompt",
            code="too_many_prompts",
        )
    sequences = prompts * n
    if sequences > settings.max_sequences_per_request:
        raise OpenAIError(
            400,
            f"{prompts} prompt(s) x n={n} is {sequences} sequences; this gateway accepts at "
            f"most {settings.max_sequences_per_request} per request",
            param="n",
            code="too_many_sequences",
        )
    return sequences


def cap_max_tokens(body: dict, chat: bool, limit: int) -> None:
    """Forward max_tokens (and, for chat, max_completion_tokens) = min(requested or limit, limit)."""
    fields = ("max_completion_tokens", "max_tokens") if chat else ("max_tokens",)
    for field in fields:
        value = body.get(field)
        if value is not None and value > limit:
            raise OpenAIError(
                400,
                f"{field}={value} is above this variant's limit of {limit} (the gateway's "
                "limit or the engine's context, whichever is lower); ask for fewer",
                param=field,
                code="max_tokens_exceeded",
            )
    # vLLM reads max_completion_tokens first for chat; both carry the same value so no engine version differs.
    requested = next((body[field] for field in fields if body.get(field) is not None), limit)
    for field in fields:
        body[field] = requested
    min_tokens = body.get("min_tokens")
    if min_tokens is not None and min_tokens > requested:
        raise OpenAIError(
            400, f"min_tokens={min_tokens} is above max_tokens={requested}", param="min_tokens", code="invalid_value"
        )


def check_evaluation_fields(
    body: dict, chat: bool, variant_name: str, variant: Variant, evaluation_key: bool, settings: Settings
) -> None:
    """echo and prompt_logprobs make the engine compute logprobs over every prompt position (a known
    memory blow-up on long prompts): only for evaluation, on a bounded prompt."""
    asked = [
        field
        for field, on in (
            ("echo", body.get("echo") is True),
            ("prompt_logprobs", body.get("prompt_logprobs") is not None),
        )
        if on
    ]
    if not asked:
        return
    field = asked[0]
    if not (variant.evaluation or evaluation_key):
        raise OpenAIError(
            400,
            f"{field} is only available on evaluation variants or with an evaluation key "
            f"(variant {variant_name!r} has `evaluation: false`)",
            param=field,
            code="evaluation_only",
        )
    size = prompt_chars(body, chat)
    if size > settings.max_echo_prompt_chars:
        raise OpenAIError(
            400,
            f"{field} is limited to prompts of {settings.max_echo_prompt_chars} characters "
            f"(token ids count {CHARS_PER_TOKEN} each); this one has {size}",
            param=field,
            code="prompt_too_long_for_logprobs",
        )
    if body.get("echo") and (body.get("logprobs") or 0) > 5:
        raise OpenAIError(
            400,
            "with echo, logprobs (top-n over every prompt position) is limited to 5",
            param="logprobs",
            code="invalid_value",
        )


def check_content_parts(body: dict, variant_name: str, variant: Variant) -> None:
    if variant.multimodal:
        return
    for i, message in enumerate(body.get("messages") or []):
        content = message.get("content")
        if not isinstance(content, list):
            continue
        for j, part in enumerate(content):
            if part.get("type") != "text":
                raise OpenAIError(
                    400,
                    f"variant {variant_name!r} accepts text content only (a `{part.get('type')}` "
                    "part needs `multimodal: true`)",
                    param=f"messages.{i}.content.{j}.type",
                    code="unsupported_content",
                )
