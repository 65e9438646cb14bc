"""Proxy one non-streaming request: forward, judge the answer, trim logprobs, answer with headers."""

from __future__ import annotations

import httpx
from fastapi.responses import JSONResponse

from app.core.state import GatewayState
from app.reliability.logprobs import LogprobPlan, TokenTrace
from app.reliability.verdict import flags_header
from app.serving.assess import assess
from app.serving.exchange import Exchange
from app.serving.upstream import transport_failure, upstream_error


async def forward(gateway: GatewayState, exchange: Exchange, path: str, upstream_body: dict,
                  plan: LogprobPlan) -> JSONResponse:
    backend = exchange.backend
    try:
        response = await gateway.client.post(backend.url + path, json=upstream_body,
                                             timeout=gateway.settings.upstream_timeout_s)
    except httpx.HTTPError as exc:
        raise transport_failure(gateway, backend, exc) from None
    if response.status_code >= 400:
        raise upstream_error(backend.variant, response.status_code, response.content)
    data = response.json()
    exchange.mark_first_token()
    exchange.count_usage(data.get("usage"))
    choices = data.get("choices") or []
    trace = TokenTrace()
    if choices:
        trace.add_choice(choices[0], plan.chat)
    if upstream_body.get("echo"):
        trace = trace.generated_only(exchange.completion_tokens)
    reliability = await assess(gateway, exchange.target, upstream_body, trace, plan.chat,
                               exchange.completion_tokens)
    for choice in choices:
        plan.strip(choice)
    data["model"] = exchange.target.variant
    data["reliability"] = reliability
    exchange.flags = reliability["flags"]
    exchange.text["completion_text"] = trace.answer
    headers = {**exchange.target.headers(), "x-moe-reliability-flags": flags_header(reliability)}
    return JSONResponse(data, headers=headers)
