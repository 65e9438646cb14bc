"""Ask the engine for token logprobs on every request, and hide from the answer what the client did not ask for.

Reading the logprobs back is `moeprune.reliability.token_trace.TokenTrace`, the reader the
evaluators calibrate with.
"""

from __future__ import annotations

from dataclasses import dataclass

from moeprune.reliability.token_trace import TOP_LOGPROBS


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

    def keeps(self, choice: dict) -> bool:
        """True when `strip(choice)` would leave the choice as it is (a conservative answer: False may be
        wrong, True never is)."""
        logprobs = choice.get("logprobs")
        if logprobs is None:
            return True
        if not self.client_wants:
            return False
        if self.chat:
            for entry in logprobs.get("content") or ():
                tops = entry.get("top_logprobs")
                if type(tops) is not list or len(tops) > self.client_top:
                    return False
            return True
        return logprobs.get("top_logprobs") is None


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
        body["top_logprobs"] = max(TOP_LOGPROBS, top)
    else:
        asked = body.get("logprobs")
        wants = asked is not None
        top = int(asked or 0)
        body["logprobs"] = max(TOP_LOGPROBS, top)
    return LogprobPlan(chat, wants, top)
