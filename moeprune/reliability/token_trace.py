"""The generated tokens' logprobs, read from any OpenAI-shaped response (chat or completion, streamed or not).

Chat responses carry `logprobs.content[i] = {token, logprob, top_logprobs: [...]}`;
completions carry `logprobs = {tokens, token_logprobs, top_logprobs: [{token: lp}], text_offset}`.
A stream chunk carries the same shapes for the tokens of that chunk, so a trace
fed every chunk of a stream equals the trace of the same answer unstreamed.
The evaluators and the gateway both read responses through this one class.

What a trace holds as it grows: the answer's characters (one growing buffer, not one string
per token) and the running totals of its signals (`SignalAccumulator`). The per-token logprob
lists are kept too unless the trace is made with `keep_tokens=False`: the evaluators read them
and an echoed completion's prompt tokens are cut off them (`generated_only`), but a gateway
stream needs only the signals: without the lists, all that grows with its length is the answer's text.
"""

from __future__ import annotations

from collections.abc import Iterable

from moeprune.reliability.crosscheck import answer_ended
from moeprune.reliability.signals import SignalAccumulator, compute_signals

# Every request the signals are computed for asks for this many alternatives per token
# (the entropy signal's k): the evaluators' generations and the gateway's upstream requests.
TOP_LOGPROBS = 5


class TokenTrace:
    """One choice's tokens as they arrive; `signals()` is `compute_signals` of them."""

    def __init__(
        self,
        token_logprobs: list[float | None] | None = None,
        top_logprobs: list[list[float]] | None = None,
        text: Iterable[str] = (),
        has_logprobs: bool = False,
        tool_call: bool = False,
        keep_tokens: bool = True,
    ):
        self.has_logprobs = has_logprobs
        # The choice calls a tool (function calling): its tokens are JSON arguments, not an answer to judge.
        self.tool_call = tool_call
        self.keep_tokens = keep_tokens
        # The answer as UTF-8 in one growing buffer: about a byte per character, not a str object per token
        # (io.StringIO would not do: Python 3.11's keeps every written str in a list until it is read).
        # "surrogatepass" makes the round trip exact even for a lone surrogate that a JSON escape can carry.
        self._text = bytearray()
        for piece in text:
            self._text += piece.encode("utf-8", "surrogatepass")
        # Kept as given (an echo cut passes fresh slices); left empty when the tokens are not kept.
        self._token_logprobs: list[float | None] = token_logprobs if token_logprobs is not None else []
        self._top_logprobs: list[list[float]] = top_logprobs if top_logprobs is not None else []
        self._signals: SignalAccumulator | None = None
        # How the choice ended (the last chunk that says): the base cross-check scores a self-ended answer's end.
        self.finish_reason: str | None = None
        self.stop_reason: object = None
        if not keep_tokens:
            if self._token_logprobs or self._top_logprobs:
                raise ValueError("a TokenTrace with keep_tokens=False starts empty: pass no token lists to it")
            self._signals = SignalAccumulator()

    def add_choice(self, choice: dict, chat: bool) -> None:
        """Append one choice of a response, or one stream chunk's choice."""
        logprobs = choice.get("logprobs") or {}
        if choice.get("finish_reason") is not None:
            self.finish_reason, self.stop_reason = choice["finish_reason"], choice.get("stop_reason")
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
                self._add_token(
                    entry.get("logprob"),
                    [alt.get("logprob") for alt in entry.get("top_logprobs") or [] if alt.get("logprob") is not None],
                )
        else:
            piece = choice.get("text")
            if logprobs.get("token_logprobs") is not None:
                self.has_logprobs = True
            # The two lists are fed apart, as `compute_signals` reads them: an engine may send them of unequal length.
            for logprob in logprobs.get("token_logprobs") or []:
                self._add_logprob(logprob)
            for tops in logprobs.get("top_logprobs") or []:
                self._add_alternatives(list((tops or {}).values()))
        if piece:
            self._text += piece.encode("utf-8", "surrogatepass")

    def _add_token(self, logprob: float | None, tops: list[float]) -> None:
        if self._signals is not None:
            self._signals.add(logprob, tops)
        else:
            self._token_logprobs.append(logprob)
            self._top_logprobs.append(tops)

    def _add_logprob(self, logprob: float | None) -> None:
        if self._signals is not None:
            self._signals.add_logprob(logprob)
        else:
            self._token_logprobs.append(logprob)

    def _add_alternatives(self, tops: list[float]) -> None:
        if self._signals is not None:
            self._signals.add_alternatives(tops)
        else:
            self._top_logprobs.append(tops)

    @property
    def token_logprobs(self) -> list[float | None]:
        self._check_kept("token_logprobs")
        return self._token_logprobs

    @property
    def top_logprobs(self) -> list[list[float]]:
        self._check_kept("top_logprobs")
        return self._top_logprobs

    def _check_kept(self, name: str) -> None:
        if not self.keep_tokens:
            raise ValueError(
                f"this TokenTrace kept no per-token lists (keep_tokens=False), so it has no {name}; "
                "make it with keep_tokens=True where the tokens themselves are read"
            )

    def signals(self) -> dict[str, float]:
        """`compute_signals` of the tokens so far (from the running totals when the tokens were not kept)."""
        if self._signals is not None:
            return self._signals.signals()
        return compute_signals(self._token_logprobs, self._top_logprobs)

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
        trace = TokenTrace(
            self.token_logprobs[-completion_tokens:],
            self.top_logprobs[-completion_tokens:],
            (self.answer,),
            self.has_logprobs,
            self.tool_call,
        )
        trace.finish_reason, trace.stop_reason = self.finish_reason, self.stop_reason
        return trace

    @property
    def ended(self) -> bool:
        """The model ended the answer itself (see moeprune.reliability.crosscheck.answer_ended)."""
        return answer_ended(self.finish_reason, self.stop_reason)

    @property
    def answer(self) -> str:
        """The answer exactly as generated (not stripped: the base cross-check scores these characters)."""
        return self._text.decode("utf-8", "surrogatepass")
