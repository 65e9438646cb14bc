"""The generated tokens' logprobs, read from any OpenAI-shaped response (chat or completion, streamed or not).

Chat responses carry `logprobs.content[i] = {token, logprob, top_logprobs: [...]}`;
completions carry `logprobs = {tokens, token_logprobs, top_logprobs: [{token: lp}], text_offset}`.
A stream chunk carries the same shapes for the tokens of that chunk, so a trace
fed every chunk of a stream equals the trace of the same answer unstreamed.
The evaluators and the gateway both read responses through this one class.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Every request the signals are computed for asks for this many alternatives per token
# (the entropy signal's k): the evaluators' generations and the gateway's upstream requests.
TOP_LOGPROBS = 5


@dataclass
class TokenTrace:
    token_logprobs: list[float] = field(default_factory=list)
    top_logprobs: list[list[float]] = field(default_factory=list)
    text: list[str] = field(default_factory=list)
    has_logprobs: bool = False
    # The choice calls a tool (function calling): its tokens are JSON arguments, not an answer to judge.
    tool_call: bool = False

    def add_choice(self, choice: dict, chat: bool) -> None:
        """Append one choice of a response, or one stream chunk's choice."""
        logprobs = choice.get("logprobs") or {}
        if chat:
            message = choice.get("message") or choice.get("delta") or {}
            piece = message.get("content")
            # A named tool_choice ends with finish_reason "stop" (as OpenAI's does): look at tool_calls too.
            if message.get("tool_calls") or choice.get("finish_reason") == "tool_calls":
                self.tool_call = True
            content = logprobs.get("content")
            if content is not None:
                self.has_logprobs = True
            for entry in content or []:
                self.token_logprobs.append(entry.get("logprob"))
                self.top_logprobs.append(
                    [alt.get("logprob") for alt in entry.get("top_logprobs") or [] if alt.get("logprob") is not None]
                )
        else:
            piece = choice.get("text")
            if logprobs.get("token_logprobs") is not None:
                self.has_logprobs = True
            self.token_logprobs.extend(logprobs.get("token_logprobs") or [])
            self.top_logprobs.extend([list((tops or {}).values()) for tops in logprobs.get("top_logprobs") or []])
        if piece:
            self.text.append(piece)

    @classmethod
    def of_response(cls, response: dict, chat: bool) -> TokenTrace:
        """The trace of a whole (non-streamed) response's first choice."""
        trace = cls()
        choices = response.get("choices") or []
        if choices:
            trace.add_choice(choices[0], chat)
        return trace

    def generated_only(self, completion_tokens: int | None) -> TokenTrace:
        """With `echo`, completions also return the prompt's tokens: keep the generated tail."""
        if not completion_tokens or completion_tokens >= len(self.token_logprobs):
            return self
        return TokenTrace(
            self.token_logprobs[-completion_tokens:],
            self.top_logprobs[-completion_tokens:],
            self.text,
            self.has_logprobs,
            self.tool_call,
        )

    @property
    def answer(self) -> str:
        """The answer exactly as generated (not stripped: the base cross-check scores these characters)."""
        return "".join(self.text)
