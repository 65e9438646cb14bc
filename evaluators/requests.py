"""The requests the evaluators send, and what they read back from the responses.

Chat tasks send the prompt as chat messages (few-shot examples as earlier
user/assistant turns) plus the run's thinking control (evaluators/thinking.py);
completion tasks send a text prompt. Every generation asks for token logprobs
(top 5) so the gateway's reliability signals can be computed. Scoring a
continuation (an option, or another variant's answer) uses prompt logprobs:
`/v1/completions` with `echo` for completion prompts (standard OpenAI), and
`/v1/chat/completions` with vLLM's `prompt_logprobs` and
`continue_final_message` for chat prompts.

What is cached is only what these readers use (`kept_generation`,
`kept_scoring`): the answer text, reasoning, finish reason, the generated
tokens' logprobs and top-5 values, and, of a scoring request's prompt
logprobs, only the continuation's slice. A whole scoring response of a long
prompt is ~170 KB; its kept part is a few hundred bytes. Cache lines written
before this (whole responses) read the same.
"""

from __future__ import annotations

from dataclasses import dataclass

from evaluators.client import EndpointClient, EndpointError
from evaluators.thinking import ThinkingControl, split_reasoning
from moeprune.reliability.crosscheck import answer_ended, answer_logprobs, base_check_request, base_check_values
from moeprune.reliability.token_trace import TOP_LOGPROBS, TokenTrace

NO_THINKING_CONTROL = ThinkingControl()
# Kept scoring responses start their prompt logprobs at this position (the slice before it is dropped).
PROMPT_LOGPROBS_FROM = "prompt_logprobs_from"
# Statuses that mean "this endpoint cannot score continuations" rather than "this request failed".
SCORING_UNSUPPORTED = (400, 404, 405, 422, 501)


@dataclass(frozen=True)
class Prompt:
    """Either chat messages or a completion prompt string."""

    messages: tuple[dict, ...] | None = None
    text: str | None = None

    @property
    def is_chat(self) -> bool:
        return self.messages is not None

    @property
    def chars(self) -> int:
        if self.is_chat:
            return sum(len(str(message.get("content") or "")) for message in self.messages)
        return len(self.text or "")


@dataclass(frozen=True)
class Generation:
    text: str  # the answer, reasoning removed, stripped: what gets parsed
    token_logprobs: list[float] | None  # None: the endpoint returned no logprobs
    top_logprobs: list[list[float]] | None
    prompt_tokens: int | None
    raw_text: str = ""  # the content exactly as generated, for scoring under another model
    reasoning: str | None = None  # the reasoning split off the answer (None: there was none)
    finish_reason: str | None = None
    attempts: int = 1  # 1 + re-asks after an empty answer
    stop_reason: object = None  # vLLM: a client's stop string, a stop token id, or None (end of sequence)


@dataclass(frozen=True)
class Decoding:
    """Sampling settings of a task's generations (the study: greedy MC answers, sampled summaries)."""

    max_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0
    retries_on_empty: int = 0

    def body(self) -> dict:
        fields = {"max_tokens": self.max_tokens, "temperature": self.temperature}
        if self.top_p != 1.0:
            fields["top_p"] = self.top_p
        return fields


def kept_generation(response: dict) -> dict:
    """The parts of a generation response that the evaluators read (TokenTrace, usage, reasoning)."""
    choice = (response.get("choices") or [{}])[0]
    kept = {"finish_reason": choice.get("finish_reason"), "stop_reason": choice.get("stop_reason")}
    logprobs = choice.get("logprobs") or {}
    if "message" in choice:
        message = choice.get("message") or {}
        kept["message"] = {
            key: message[key] for key in ("content", "reasoning", "reasoning_content") if message.get(key) is not None
        }
        if logprobs.get("content") is not None:
            kept["logprobs"] = {
                "content": [
                    {
                        "logprob": entry.get("logprob"),
                        "top_logprobs": [{"logprob": alt.get("logprob")} for alt in entry.get("top_logprobs") or []],
                    }
                    for entry in logprobs["content"]
                ]
            }
    else:
        kept["text"] = choice.get("text")
        if logprobs.get("token_logprobs") is not None:
            kept["logprobs"] = {
                "token_logprobs": logprobs["token_logprobs"],
                "top_logprobs": [
                    {str(rank): value for rank, value in enumerate((tops or {}).values())}
                    for tops in logprobs.get("top_logprobs") or []
                ],
            }
    usage = response.get("usage") or {}
    return {
        "choices": [kept],
        "usage": {key: usage[key] for key in ("prompt_tokens", "completion_tokens") if key in usage},
    }


def kept_scoring(response: dict, prompt_tokens: int | None = None, prompt: str | None = None) -> dict:
    """A scoring response reduced to the continuation's logprobs (the slice moeprune.reliability.crosscheck reads)."""
    choice = (response.get("choices") or [{}])[0]
    logprobs = choice.get("logprobs") or {}
    if prompt is None:  # chat: prompt_logprobs from position prompt_tokens on, and the one generated token
        entries = response.get("prompt_logprobs") or choice.get("prompt_logprobs")
        if not entries or not prompt_tokens:
            return {"prompt_logprobs": None}
        tail = [
            None if not entry else {"t": {"logprob": next(iter(entry.values()))["logprob"]}}
            for entry in entries[prompt_tokens:]
        ]
        generated = [{"logprob": entry.get("logprob")} for entry in (logprobs.get("content") or [])[-1:]]
        return {
            PROMPT_LOGPROBS_FROM: prompt_tokens,
            "prompt_logprobs": tail,
            "choices": [{"finish_reason": choice.get("finish_reason"), "logprobs": {"content": generated}}],
        }
    offsets, values = logprobs.get("text_offset") or [], logprobs.get("token_logprobs") or []
    picked = [(offset, value) for offset, value in zip(offsets, values) if offset >= len(prompt)]
    return {
        "choices": [
            {
                "finish_reason": choice.get("finish_reason"),
                "logprobs": {"text_offset": [o for o, _ in picked], "token_logprobs": [v for _, v in picked]},
            }
        ]
    }


def expanded(response: dict) -> dict:
    """A kept scoring response as crosscheck reads it (the dropped slice as placeholders)."""
    start = response.get(PROMPT_LOGPROBS_FROM)
    if start is None:
        return response
    return {
        "prompt_logprobs": [None] * start + list(response.get("prompt_logprobs") or []),
        "choices": response.get("choices") or [{}],
    }


async def generate(
    client: EndpointClient, prompt: Prompt, max_tokens: int | Decoding, thinking: ThinkingControl = NO_THINKING_CONTROL
) -> Generation:
    """A generation with token logprobs (read by the same TokenTrace the gateway uses), reasoning split off.

    A rejection is not cached (a rerun retries the item); an answer that comes back empty is asked
    again up to `retries_on_empty` times, each time with another seed (another request, another cache line).
    """
    decoding = max_tokens if isinstance(max_tokens, Decoding) else Decoding(max_tokens)
    generation = None
    for attempt in range(decoding.retries_on_empty + 1):
        body = {**decoding.body(), **thinking.request_fields(prompt.is_chat)}
        if attempt:
            body["seed"] = attempt
        if prompt.is_chat:
            body.update(messages=list(prompt.messages), logprobs=True, top_logprobs=TOP_LOGPROBS)
            response = await client.post("chat/completions", body, remember_rejection=False, keep=kept_generation)
        else:
            body.update(prompt=prompt.text, logprobs=TOP_LOGPROBS)
            response = await client.post("completions", body, remember_rejection=False, keep=kept_generation)
        generation = read_generation(response, prompt.is_chat, attempt + 1)
        if generation.text:
            break
    return generation


def read_generation(response: dict, chat: bool, attempts: int = 1) -> Generation:
    trace = TokenTrace.of_response(response, chat)
    choice = (response.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    split = split_reasoning(trace.answer, message.get("reasoning") or message.get("reasoning_content"))
    usage = response.get("usage") or {}
    token_lps = trace.token_logprobs if trace.has_logprobs and trace.token_logprobs else None
    tops = trace.top_logprobs if token_lps is not None else None
    return Generation(
        split.answer.strip(),
        token_lps,
        tops,
        usage.get("prompt_tokens"),
        trace.answer,
        split.reasoning,
        choice.get("finish_reason"),
        attempts,
        choice.get("stop_reason"),
    )


async def continuation_logprobs(
    client: EndpointClient,
    prompt: Prompt,
    continuation: str,
    context_tokens: int | None,
    thinking: ThinkingControl = NO_THINKING_CONTROL,
) -> list[float] | None:
    """Token logprobs of `continuation` right after `prompt` (moeprune.reliability.crosscheck's one boundary rule);
    None where the endpoint cannot say. `context_tokens`: the prompt's token count (chat prompts)."""
    response = await _scoring(client, prompt, continuation, context_tokens, thinking)
    text = None if prompt.is_chat else prompt.text
    return (
        None if response is None else answer_logprobs(response, continuation, prompt_tokens=context_tokens, prompt=text)
    )


async def base_check_logprobs(
    client: EndpointClient, prompt: Prompt, generation: Generation, thinking: ThinkingControl = NO_THINKING_CONTROL
) -> list[float] | None:
    """The base cross-check's values for a generation: its answer's logprobs under the base, then its end's when
    the variant ended it (moeprune.reliability.crosscheck.base_check_values, as the gateway reads them)."""
    answer = generation.raw_text
    response = await _scoring(client, prompt, answer, generation.prompt_tokens, thinking)
    if response is None:
        return None
    ended = answer_ended(generation.finish_reason, generation.stop_reason)
    text = None if prompt.is_chat else prompt.text
    return base_check_values(response, answer, ended, prompt_tokens=generation.prompt_tokens, prompt=text)


async def _scoring(
    client: EndpointClient,
    prompt: Prompt,
    continuation: str,
    context_tokens: int | None,
    thinking: ThinkingControl,
) -> dict | None:
    """The scoring response for `continuation` after `prompt`, as kept_scoring keeps it (expanded); None where
    the endpoint cannot score."""
    if prompt.is_chat and not context_tokens:
        return None
    body = base_check_request(
        continuation,
        messages=list(prompt.messages) if prompt.is_chat else None,
        prompt=None if prompt.is_chat else prompt.text,
    )
    if body is None:
        return None
    body.update(thinking.request_fields(prompt.is_chat))  # the same template rendering as the generation
    text = None if prompt.is_chat else prompt.text
    try:
        response = await client.post(
            "chat/completions" if prompt.is_chat else "completions",
            body,
            keep=lambda whole: kept_scoring(whole, context_tokens, text),
        )
    except EndpointError as exc:
        # An endpoint that rejects prompt-logprob requests (e.g. a plain OpenAI server: 400/422, or
        # one without the route) makes scoring unavailable, not the evaluation fail. Anything else (5xx after retries, a
        # timeout, no connection) fails the item, which a rerun retries.
        if exc.status in SCORING_UNSUPPORTED and not exc.context_overflow:
            return None
        raise
    return expanded(response)
