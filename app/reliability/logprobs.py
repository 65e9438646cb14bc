"""Ask the engine for token logprobs on every request, read them back, and hide what the client did not ask for.

Chat responses carry `logprobs.content[i] = {token, logprob, top_logprobs: [...]}`;
completions carry `logprobs = {tokens, token_logprobs, top_logprobs: [{token: lp}], ...}`.
Stream chunks carry the same shapes for the tokens of that chunk.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# The engine is always asked for this many alternatives per token (the entropy signal's k).
TOP_K = 5


@dataclass
class LogprobPlan:
    """What the client asked for, so the response can be trimmed back to exactly that."""

    chat: bool
    client_wants: bool
    client_top: int

    def strip(self, choice: dict) -> None:
        logprobs = choice.get("logprobs")
        if logprobs is None:
            return
        if not self.client_wants:
            choice["logprobs"] = None
        elif self.chat:
            for entry in logprobs.get("content") or []:
                entry["top_logprobs"] = (entry.get("top_logprobs") or [])[: self.client_top]
        elif logprobs.get("top_logprobs") is not None:
            logprobs["top_logprobs"] = [_top_n(tops, self.client_top) for tops in logprobs["top_logprobs"]]


def _top_n(tops: dict | None, n: int) -> dict | None:
    if tops is None:
        return None
    return dict(sorted(tops.items(), key=lambda item: item[1], reverse=True)[:n])


def plan_logprobs(body: dict, chat: bool) -> LogprobPlan:
    """Rewrite `body` (the upstream request) to ask for top-5 logprobs; remember the client's wish."""
    if chat:
        wants = bool(body.get("logprobs"))
        top = int(body.get("top_logprobs") or 0) if wants else 0
        body["logprobs"] = True
        body["top_logprobs"] = max(TOP_K, top)
    else:
        asked = body.get("logprobs")
        wants = asked is not None
        top = int(asked or 0)
        body["logprobs"] = max(TOP_K, top)
    return LogprobPlan(chat, wants, top)


@dataclass
class TokenTrace:
    """The generated tokens' logprobs and top-k alternatives, accumulated over a response or stream."""

    token_logprobs: list[float] = field(default_factory=list)
    top_logprobs: list[list[float]] = field(default_factory=list)
    text: list[str] = field(default_factory=list)

    def add_choice(self, choice: dict, chat: bool) -> None:
        logprobs = choice.get("logprobs") or {}
        if chat:
            piece = (choice.get("message") or choice.get("delta") or {}).get("content")
            for entry in logprobs.get("content") or []:
                self.token_logprobs.append(entry.get("logprob"))
                self.top_logprobs.append([alt.get("logprob") for alt in entry.get("top_logprobs") or []
                                          if alt.get("logprob") is not None])
        else:
            piece = choice.get("text")
            self.token_logprobs.extend(logprobs.get("token_logprobs") or [])
            self.top_logprobs.extend([list((tops or {}).values()) for tops in logprobs.get("top_logprobs") or []])
        if piece:
            self.text.append(piece)

    def generated_only(self, completion_tokens: int | None) -> "TokenTrace":
        """With `echo`, completions also return the prompt's tokens: keep the generated tail."""
        if not completion_tokens or completion_tokens >= len(self.token_logprobs):
            return self
        return TokenTrace(self.token_logprobs[-completion_tokens:], self.top_logprobs[-completion_tokens:],
                          self.text)

    @property
    def answer(self) -> str:
        return "".join(self.text)
