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
from evaluators.crosscheck import answer_logprobs, base_check_request
from evaluators.token_trace import TOP_LOGPROBS, TokenTrace


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
    text: str  # stripped, for parsing
    token_logprobs: list[float] | None  # None: the endpoint returned no logprobs
    top_logprobs: list[list[float]] | None
    prompt_tokens: int | None
    raw_text: str = ""  # exactly as generated, for scoring under another model


async def generate(client: EndpointClient, prompt: Prompt, max_tokens: int) -> Generation:
    """Greedy generation with token logprobs (read by the same TokenTrace the gateway uses)."""
    common = {"max_tokens": max_tokens, "temperature": 0}
    if prompt.is_chat:
        body = {"messages": list(prompt.messages), "logprobs": True, "top_logprobs": TOP_LOGPROBS, **common}
        response = await client.post("chat/completions", body)
    else:
        body = {"prompt": prompt.text, "logprobs": TOP_LOGPROBS, **common}
        response = await client.post("completions", body)
    trace = TokenTrace.of_response(response, prompt.is_chat)
    usage = response.get("usage") or {}
    token_lps = trace.token_logprobs if trace.has_logprobs and trace.token_logprobs else None
    tops = trace.top_logprobs if token_lps is not None else None
    return Generation(trace.answer.strip(), token_lps, tops, usage.get("prompt_tokens"), trace.answer)


async def continuation_logprobs(client: EndpointClient, prompt: Prompt, continuation: str,
                                context_tokens: int | None) -> list[float] | None:
    """Token logprobs of `continuation` right after `prompt` (evaluators.crosscheck's one boundary rule);
    None where the endpoint cannot say. `context_tokens`: the prompt's token count (chat prompts)."""
    if prompt.is_chat and not context_tokens:
        return None
    body = base_check_request(continuation, messages=list(prompt.messages) if prompt.is_chat else None,
                              prompt=None if prompt.is_chat else prompt.text)
    if body is None:
        return None
    try:
        response = await client.post("chat/completions" if prompt.is_chat else "completions", body)
    except EndpointError:
        # An endpoint that rejects prompt-logprob requests (e.g. a plain OpenAI
        # server) makes scoring unavailable, not the whole evaluation fail.
        return None
    return answer_logprobs(response, continuation, prompt_tokens=context_tokens,
                           prompt=None if prompt.is_chat else prompt.text)
