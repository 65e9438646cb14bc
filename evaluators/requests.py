"""The requests the evaluators send, and what they read back from the responses.

Chat tasks send the contract prompt as one user message (few-shot examples as
earlier user/assistant turns); completion tasks send the same text with
`\\nAnswer:` appended. Every generation asks for token logprobs (top 5) so
the gateway's reliability signals can be computed. Scoring a continuation
(an option, or another variant's answer) uses prompt logprobs:
`/v1/completions` with `echo` for completion prompts (standard OpenAI), and
`/v1/chat/completions` with vLLM's `prompt_logprobs` and
`continue_final_message` for chat prompts.
"""

from __future__ import annotations

from dataclasses import dataclass

from evaluators.client import EndpointClient, EndpointError

TOP_LOGPROBS = 5


@dataclass(frozen=True)
class Prompt:
    """Either chat messages or a completion prompt string."""

    messages: tuple[dict, ...] | None = None
    text: str | None = None

    @property
    def is_chat(self) -> bool:
        return self.messages is not None


@dataclass(frozen=True)
class Generation:
    text: str
    token_logprobs: list[float] | None  # None: the endpoint returned no logprobs
    top_logprobs: list[list[float]] | None
    prompt_tokens: int | None


async def generate(client: EndpointClient, prompt: Prompt, max_tokens: int) -> Generation:
    """Greedy generation with token logprobs."""
    common = {"max_tokens": max_tokens, "temperature": 0}
    if prompt.is_chat:
        body = {"messages": list(prompt.messages), "logprobs": True, "top_logprobs": TOP_LOGPROBS, **common}
        response = await client.post("chat/completions", body)
        choice = response["choices"][0]
        text = choice.get("message", {}).get("content") or ""
        content = (choice.get("logprobs") or {}).get("content")
        token_lps = [entry["logprob"] for entry in content] if content else None
        tops = [[alt["logprob"] for alt in entry.get("top_logprobs") or []] for entry in content] if content else None
    else:
        body = {"prompt": prompt.text, "logprobs": TOP_LOGPROBS, **common}
        response = await client.post("completions", body)
        choice = response["choices"][0]
        text = choice.get("text") or ""
        logprobs = choice.get("logprobs") or {}
        token_lps = logprobs.get("token_logprobs") or None
        tops = [list((alts or {}).values()) for alts in logprobs.get("top_logprobs") or []] or None
    usage = response.get("usage") or {}
    return Generation(text.strip(), token_lps, tops, usage.get("prompt_tokens"))


async def continuation_logprobs(client: EndpointClient, prompt: Prompt, continuation: str,
                                context_tokens: int | None) -> list[float] | None:
    """Token logprobs of `continuation` right after `prompt`; None where the endpoint cannot say."""
    try:
        if prompt.is_chat:
            return await _chat_continuation(client, prompt, continuation, context_tokens)
        return await _completion_continuation(client, prompt.text, continuation)
    except EndpointError:
        # An endpoint that rejects prompt-logprob requests (e.g. a plain OpenAI
        # server) makes scoring unavailable, not the whole evaluation fail.
        return None


async def _chat_continuation(client, prompt: Prompt, continuation: str, context_tokens: int | None):
    if not context_tokens:
        return None
    body = {
        "messages": [*prompt.messages, {"role": "assistant", "content": continuation}],
        "max_tokens": 1, "temperature": 0, "prompt_logprobs": 0,
        "add_generation_prompt": False, "continue_final_message": True,
    }
    response = await client.post("chat/completions", body)
    entries = response.get("prompt_logprobs")
    if not entries or len(entries) <= context_tokens:
        return None
    values = []
    for entry in entries[context_tokens:]:
        if not entry:
            return None
        values.append(next(iter(entry.values()))["logprob"])
    return values


async def _completion_continuation(client, context: str, continuation: str):
    full = context + continuation
    body = {"prompt": full, "max_tokens": 1, "temperature": 0, "logprobs": 0, "echo": True}
    response = await client.post("completions", body)
    logprobs = response["choices"][0].get("logprobs") or {}
    offsets, values = logprobs.get("text_offset"), logprobs.get("token_logprobs")
    if not offsets or not values:
        return None
    picked = [lp for off, lp in zip(offsets, values) if len(context) <= off < len(full)]
    if not picked or any(lp is None for lp in picked):
        return None
    return picked
