"""One OpenAI request through the gateway: pick the variant, admit it, forward it, account for it."""

from __future__ import annotations

import asyncio

from fastapi import Request
from fastapi.responses import Response

from app.api.errors import OpenAIError
from app.core.state import GatewayState
from app.reliability.logprobs import plan_logprobs
from app.serving.exchange import Exchange
from app.serving.forward import forward
from app.serving.stream import open_stream
from app.serving.targets import resolve_target
from app.serving.upstream import backend_unavailable

RETRY_AFTER_FULL_S = "1"


def check_token_limits(body: dict, limit: int) -> None:
    for field in ("max_tokens", "max_completion_tokens"):
        value = body.get(field)
        if isinstance(value, int) and value > limit:
            raise OpenAIError(400, f"{field}={value} is above this gateway's limit of {limit}; ask for fewer",
                              param=field, code="max_tokens_exceeded")


async def serve(request: Request, gateway: GatewayState, body: dict, chat: bool) -> Response:
    path = "/v1/chat/completions" if chat else "/v1/completions"
    check_token_limits(body, gateway.settings.max_tokens_limit)
    target = resolve_target(gateway, body["model"], request.headers, body.get("user"))
    stream = bool(body.get("stream"))
    exchange = Exchange(gateway, target, request.state.request_id, path, stream)
    backend = exchange.backend
    if gateway.settings.log_text:  # off by default: prompts may hold patient data
        exchange.text["prompt_text"] = body.get("messages") if chat else body.get("prompt")
    try:
        if not backend.up:
            raise backend_unavailable(backend)
        if backend.in_flight >= backend.max_in_flight:
            raise OpenAIError(429, f"variant {target.variant!r} has {backend.in_flight} requests in flight "
                                   f"(limit {backend.max_in_flight}); retry shortly",
                              code="queue_full", headers={"Retry-After": RETRY_AFTER_FULL_S})
        exchange.take_slot()
        upstream_body = dict(body, model=backend.served_model)
        plan = plan_logprobs(upstream_body, chat)
        if not stream:
            response = await forward(gateway, exchange, path, upstream_body, plan)
            exchange.end(response.status_code)
            return response
        client_wants_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        upstream_body["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
        return await open_stream(gateway, exchange, path, upstream_body, plan, client_wants_usage)
    except OpenAIError as exc:
        exc.headers.update(target.headers())
        exchange.end(exc.status)
        raise
    except asyncio.CancelledError:
        exchange.end(499)  # the client went away
        raise
    except Exception:
        exchange.end(500)
        raise
