"""The bookkeeping of one proxied request: slots held, metrics, experiment stats, access log."""

from __future__ import annotations

import logging
import time

from app.reliability.live import ServedAnswer
from app.serving.admission import Slots
from app.serving.targets import Target
from app.state import GatewayState
from app.trace import CURRENT

access_log = logging.getLogger("moeprune.access")


class Exchange:
    def __init__(self, gateway: GatewayState, target: Target, request_id: str, endpoint: str, stream: bool):
        self.gateway = gateway
        self.target = target
        self.request_id = request_id
        self.endpoint = endpoint
        self.stream = stream
        self.started = time.perf_counter()
        self.first_token_at: float | None = None
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.flags: list[str] = []
        self.reliability: dict | None = None  # the served answer's `reliability` object (None: no answer)
        self.text: dict[str, object] = {}  # prompt/completion for the access log (MOEPRUNE_LOG_TEXT)
        self.slots: Slots | None = None  # the variant's and the key's sequences this request holds
        self.key_id = "anonymous"  # the API key's digest (app/api/auth.py key_id): who may give feedback
        self.completion_id: str | None = None  # the engine's answer id, remembered for POST /v1/feedback
        # A guard's fallback may answer instead (target = who answered): experiments record the assigned arm.
        self.arm: str | None = None
        self.guard: dict | None = None  # reliability.guard (app/guard/run.py), also in the access log
        self.keep_routed_experts = False  # `x-moe-routed-experts: keep`: the client sees vLLM's routed_experts
        self.ended = False

    @property
    def backend(self):
        return self.gateway.backends[self.target.variant]

    def hold(self, slots: Slots) -> None:
        self.slots = slots

    def mark_first_token(self) -> None:
        if self.first_token_at is None:
            self.first_token_at = time.perf_counter()

    def count_usage(self, usage: dict | None) -> None:
        if usage:
            self.prompt_tokens = usage.get("prompt_tokens") or 0
            self.completion_tokens = usage.get("completion_tokens") or 0

    @property
    def abstained(self) -> bool:
        return bool(self.reliability and self.reliability.get("abstained"))

    @property
    def outcome_flags(self) -> list[str]:
        """The flags plus `refusal` for an abstention: what experiments and cascades may decide on by name."""
        return [*self.flags, "refusal"] if self.abstained else list(self.flags)

    def served_answer(self) -> ServedAnswer | None:
        """What live re-certification keeps of the answer the client received (no text)."""
        reliability = self.reliability
        # A tool call (`not_assessed`) is no answer a label could call right or wrong: not recorded.
        if reliability is None or "domain" not in reliability or reliability.get("not_assessed"):
            return None
        certificate = reliability.get("certificate") or {}
        return ServedAnswer(
            completion_id=self.completion_id or self.request_id,
            variant=self.target.variant,
            domain=reliability["domain"],
            p_wrong=reliability.get("p_wrong"),
            flagged=bool(reliability.get("above_risk")) or "uncertified" in reliability["flags"],
            abstained=self.abstained,
            card_sha256=certificate.get("card_sha256"),
            key_id=self.key_id,
        )

    def end(self, status: int) -> None:
        """Record the outcome once (later calls are ignored)."""
        if self.ended:
            return
        self.ended = True
        if self.slots is not None:
            self.slots.release()
        duration = time.perf_counter() - self.started
        ttft = self.first_token_at - self.started if self.first_token_at is not None else None
        variant, experiment = self.target.variant, self.target.experiment
        self.gateway.metrics.observe_response(
            variant, experiment, status, duration, ttft, self.prompt_tokens, self.completion_tokens, self.flags
        )
        served = self.served_answer() if status == 200 else None
        if served is not None:
            self.gateway.live.record_served(served)
        if experiment:
            self.gateway.experiments.record(
                experiment, self.arm or variant, status, duration, self.outcome_flags, self.completion_id, self.key_id
            )
        trace = CURRENT.get()
        fields: dict[str, object] = {
            "request_id": self.request_id,
            "trace_id": trace.trace_id if trace else None,
            "endpoint": self.endpoint,
            "variant": variant,
            "experiment": experiment or None,
            "status": status,
            "stream": self.stream,
            "latency_ms": round(duration * 1000, 2),
            "ttft_ms": round(ttft * 1000, 2) if ttft is not None else None,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "flags": self.flags,
        }
        if self.guard is not None:
            fields["guard"] = self.guard
        if self.gateway.settings.log_text:
            fields.update(self.text)
        self.gateway.spans.annotate(fields)
        access_log.info("request", extra=fields)
