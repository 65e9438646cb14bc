"""Proxy one non-streaming request: forward, judge the answer, trim logprobs, answer with headers.

The whole exchange with the engine (its answer and any extra reliability calls)
is raced against the client hanging up and bounded by the request's deadline:
either cancels it, which closes the upstream connection so vLLM aborts the
request, and the caller then frees the slot (status 499 or 504).
"""

from __future__ import annotations

import logging

from fastapi.responses import JSONResponse

from app.errors import OpenAIError
from app.reliability.logprobs import LogprobPlan
from app.reliability.verdict import flags_header
from app.serving.assess import assess
from app.serving.codec import loads_standard
from app.serving.deadline import within_deadline
from app.serving.disconnect import Receive, until_disconnect
from app.serving.exchange import Exchange
from app.serving.splice import EngineBytesResponse, encode_reliability, splice_answer
from app.serving.upstream import send_upstream, upstream_error
from app.state import GatewayState
from moeprune.reliability.token_trace import TokenTrace

log = logging.getLogger("moeprune.upstream")


async def forward(
    gateway: GatewayState,
    exchange: Exchange,
    path: str,
    upstream_body: dict,
    plan: LogprobPlan,
    receive: Receive | None = None,
) -> JSONResponse:
    work = _forward(gateway, exchange, path, upstream_body, plan)
    return await within_deadline(exchange, until_disconnect(receive, work))


async def _forward(
    gateway: GatewayState, exchange: Exchange, path: str, upstream_body: dict, plan: LogprobPlan
) -> JSONResponse:
    backend = exchange.backend
    response = await send_upstream(gateway, backend, path, upstream_body, stream=False)
    if response.status_code >= 400:
        raise upstream_error(backend.variant, response.status_code, response.content, path)
    try:
        data, standard = loads_standard(response.content)
        if not isinstance(data, dict):
            raise ValueError("the answer is not a JSON object")
    except ValueError as exc:
        log.warning("malformed engine answer", extra={"variant": backend.variant, "error": str(exc)[:500]})
        raise OpenAIError(
            502, f"the engine of variant {backend.variant!r} sent a malformed answer; retry", code="upstream_failed"
        ) from None
    exchange.mark_first_token()
    exchange.count_usage(data.get("usage"))
    exchange.completion_id = data.get("id") if isinstance(data.get("id"), str) else None
    choices = data.get("choices") or []
    # Whether the answer's own bytes can go on (app/serving/splice.py): nothing but `model` changes in it.
    standard = standard and all(isinstance(choice, dict) and plan.keeps(choice) for choice in choices)
    if gateway.telemetry is not None:  # routed_experts: counted, and removed unless the client asked to keep them
        keep = exchange.keep_routed_experts
        standard = standard and (keep or not any("routed_experts" in choice for choice in choices))
        gateway.telemetry.take(
            exchange.target.variant, exchange.target.experiment, choices, exchange.keep_routed_experts
        )
    trace = TokenTrace.of_response(data, plan.chat)
    if upstream_body.get("echo"):
        trace = trace.generated_only(exchange.completion_tokens)
    reliability = await assess(
        gateway, exchange.target, upstream_body, trace, plan.chat, exchange.completion_tokens, exchange.prompt_tokens
    )
    exchange.flags = reliability["flags"]
    exchange.reliability = reliability
    exchange.text["completion_text"] = trace.answer
    headers = {**exchange.target.headers(), "x-moe-reliability-flags": flags_header(reliability)}
    if standard:
        spliced = splice_answer(response.content, data, exchange.target.variant, encode_reliability(reliability))
        if spliced is not None:
            return EngineBytesResponse(spliced, headers=headers)
    for choice in choices:
        plan.strip(choice)
    data["model"] = exchange.target.variant
    data["reliability"] = reliability
    return JSONResponse(data, headers=headers)
