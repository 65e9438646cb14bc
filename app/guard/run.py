"""One request's guard: the domain gate before the backend is chosen, the cascade after a non-streaming answer.

Every outcome is said in the answer (`reliability.guard`, the `x-moe-variant`
header names who answered, `x-moe-guard` sums it up), counted
(`moeprune_guard_decisions_total`, `moeprune_guard_extra_seconds`) and logged
(the access log's `guard` field). A fallback that is down, full or failing
never turns the request into an error: the pruned variant's answer is served
with the `guard_unavailable` flag. A function-calling request never goes to a
fallback without `tools: true` (app/serving/tools.py): that guard decision is
`no_tools`, and the answer carries `guard_unavailable` as for a fallback that is
down. Streams get the gate only (their answer is
already on its way when its flags are known); their guard outcome is in the
headers.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable

from fastapi.responses import JSONResponse, Response

from app.errors import OpenAIError
from app.guard.prompt_text import prompt_text
from app.reliability.verdict import flags_header
from app.serving.exchange import Exchange
from app.serving.targets import Target
from app.serving.tools import takes_tools, tool_use
from app.state import GatewayState

log = logging.getLogger("moeprune.guard")

UNAVAILABLE_FLAG = "guard_unavailable"
NO_TOOLS = "no_tools"  # the decision when a function-calling request's fallback has no `tools: true`
Resend = Callable[[str], Awaitable[Response]]  # ask variant V the same request; the answer as forward() gives it


class RequestGuard:
    def __init__(self, gateway: GatewayState, target: Target, body: dict, chat: bool):
        self.gateway = gateway
        self.assigned = target  # the variant the request named, or the arm the experiment chose
        self.target = target  # who serves it
        variant = gateway.config.variants[target.variant]
        self.options = variant.guards
        self.outcome: dict | None = None
        self.flag_unavailable = False
        self.escalated: dict | None = None  # reliability.escalated: {from, reason} when the fallback answered
        if self.options is None:
            return
        self.uses_tools = chat and tool_use(body) is not None
        self.outcome = {"domain_score": None, "gate": None, "cascade": None, "served_by": target.variant}
        if self.options.domain_gate is not None:
            self._gate(body, chat, self.options.domain_gate.fallback)

    @property
    def active(self) -> bool:
        return self.outcome is not None

    def _count(self, guard: str, decision: str, extra_s: float | None = None) -> None:
        metrics = self.gateway.metrics
        metrics.guard_decisions.labels(self.assigned.variant, guard, decision).inc()
        if extra_s is not None:
            metrics.guard_extra_seconds.labels(self.assigned.variant, guard).observe(extra_s)

    def _gate(self, body: dict, chat: bool, fallback: str) -> None:
        assert self.outcome is not None  # set in __init__ before the gate runs
        started = time.perf_counter()
        loaded = self.gateway.gates[self.assigned.variant]
        text = prompt_text(body, chat)
        score = loaded.gate.score(text) if text.strip() else None  # no text (token ids): nothing to judge
        self.outcome["domain_score"] = round(score, 6) if score is not None else None
        if score is None or score >= loaded.threshold:
            decision = "pass"
        else:
            if not self._fallback_takes_tools(fallback):
                decision = NO_TOOLS
                self.flag_unavailable = True
                log.warning(
                    "domain gate: the fallback does not take tools; the assigned variant answers",
                    extra={"variant": self.assigned.variant, "fallback": fallback},
                )
            elif self.gateway.backends[fallback].up:
                decision = "fallback"
                self.target = Target(fallback, self.assigned.experiment)
                self.outcome["served_by"] = fallback
            else:
                decision = "unavailable"
                self.flag_unavailable = True
                log.warning(
                    "domain gate: the fallback is down; the pruned variant answers",
                    extra={"variant": self.assigned.variant, "fallback": fallback},
                )
        self.outcome["gate"] = decision
        self._count("domain_gate", decision, time.perf_counter() - started)

    def _fallback_takes_tools(self, fallback: str) -> bool:
        """False for a function-calling request and a fallback without tools: it could not render the tools."""
        return not self.uses_tools or takes_tools(self.gateway.config, fallback)

    def attach(self, exchange: Exchange) -> None:
        """The exchange records the assigned arm for experiments and the guard outcome in the access log."""
        exchange.arm = self.assigned.variant
        exchange.guard = self.outcome

    def headers(self) -> dict[str, str]:
        if self.outcome is None:
            return {}
        summary = ",".join(f"{key}={self.outcome[key]}" for key in ("gate", "cascade") if self.outcome[key])
        return {"x-moe-variant": self.outcome["served_by"], "x-moe-guard": summary or "none"}

    def on_stream(self, response: Response) -> Response:
        if self.outcome is not None and self.options is not None:  # both set, or neither (__init__)
            if self.options.cascade is not None:
                self.outcome["cascade"] = "not_streamed"
            response.headers.update(self.headers())
        return response

    async def after_answer(self, exchange: Exchange, response: Response, resend: Resend) -> Response:
        """Run the cascade on a non-streaming answer; put the outcome into the answer."""
        # outcome and options are both set, or neither (__init__)
        if self.outcome is None or self.options is None or not isinstance(response, JSONResponse):
            return response
        cascade = self.options.cascade
        if cascade is not None and self.target == self.assigned:
            raised = [flag for flag in exchange.outcome_flags if flag in cascade.flags]
            if not raised:
                self.outcome["cascade"] = "none"
                self._count("cascade", "none")
            else:
                response = await self._escalate(exchange, response, resend, cascade.fallback, raised)
        elif cascade is not None:
            self.outcome["cascade"] = "none"  # the gate already sent it to the fallback
        return self._annotate(exchange, response)

    async def _escalate(
        self, exchange: Exchange, response: Response, resend: Resend, fallback: str, raised: list[str]
    ) -> Response:
        assert self.outcome is not None  # the cascade runs for an active guard only (after_answer)
        started = time.perf_counter()
        if not self._fallback_takes_tools(fallback):
            return self._unavailable(response, fallback, NO_TOOLS, started, decision=NO_TOOLS)
        backend = self.gateway.backends[fallback]
        slots = self.gateway.admission.try_admit_check(backend, 1) if backend.up else None
        if slots is None:
            return self._unavailable(response, fallback, "down" if not backend.up else "full", started)
        exchange.target = Target(fallback, self.assigned.experiment)
        try:
            answer = await resend(fallback)
        except OpenAIError as exc:
            exchange.target = self.assigned
            return self._unavailable(response, fallback, f"answered {exc.status}", started)
        finally:
            slots.release()
        self.target = exchange.target
        self.outcome.update(cascade="escalated", served_by=fallback, escalated_on=raised)
        self.escalated = {"from": self.assigned.variant, "reason": raised[0]}
        self._count("cascade", "escalated", time.perf_counter() - started)
        self.gateway.metrics.escalations.labels(self.assigned.variant, raised[0]).inc()
        return answer

    def _unavailable(
        self, response: Response, fallback: str, why: str, started: float, decision: str = "unavailable"
    ) -> Response:
        log.warning(
            "cascade: the fallback cannot answer; the pruned variant's answer is served",
            extra={"variant": self.assigned.variant, "fallback": fallback, "error": why},
        )
        assert self.outcome is not None  # the cascade runs for an active guard only (after_answer)
        self.outcome["cascade"] = decision
        self.flag_unavailable = True
        self._count("cascade", decision, time.perf_counter() - started)
        return response

    def _annotate(self, exchange: Exchange, response: Response) -> JSONResponse:
        """`response`: a JSON answer (the variant's, or the fallback's from `resend`)."""
        data = json.loads(bytes(response.body))  # Response.body may be a memoryview, which json.loads refuses
        reliability = data.setdefault("reliability", {"flags": []})
        if self.flag_unavailable and UNAVAILABLE_FLAG not in reliability["flags"]:
            reliability["flags"].append(UNAVAILABLE_FLAG)
        reliability["guard"] = self.outcome
        if self.escalated is not None:
            reliability["escalated"] = self.escalated
        exchange.flags = reliability["flags"]
        exchange.reliability = reliability
        headers = {key: value for key, value in response.headers.items() if key.startswith("x-moe-")}
        headers.update(self.headers(), **{"x-moe-reliability-flags": flags_header(reliability)})
        return JSONResponse(data, status_code=response.status_code, headers=headers)
