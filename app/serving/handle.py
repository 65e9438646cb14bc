"""One OpenAI request through the gateway: pick the variant, bound it, admit it, forward it, account for it."""

from __future__ import annotations

import asyncio

from fastapi import Request
from fastapi.responses import Response

from app.errors import OpenAIError
from app.guard.run import RequestGuard, Resend
from app.reliability.logprobs import plan_logprobs
from app.serving.bounds import cap_max_tokens, check_content_parts, check_evaluation_fields, count_sequences
from app.serving.exchange import Exchange
from app.serving.forward import forward
from app.serving.stream import open_stream
from app.serving.targets import resolve_target
from app.serving.upstream import backend_unavailable
from app.state import GatewayState
from app.telemetry.service import KEEP_HEADER

ANONYMOUS = "anonymous"


def bound_request(gateway: GatewayState, request: Request, body: dict, chat: bool, variant_name: str) -> int:
    """Check `body` against the limits of this variant and key, fill in max_tokens; the sequence count."""
    settings = gateway.settings
    variant = gateway.config.variants[variant_name]
    sequences = count_sequences(body, chat, settings)
    # Never above the engine's context: vLLM refuses max_tokens > max_model_len (an omitted max_tokens
    # would otherwise become the gateway's limit, 4096, and fail on a small-context engine).
    context = gateway.backends[variant_name].max_model_len
    cap_max_tokens(body, chat, min(settings.max_tokens_limit, context or settings.max_tokens_limit))
    evaluation_key = bool(getattr(request.state, "evaluation_key", False))
    check_evaluation_fields(body, chat, variant_name, variant, evaluation_key, settings)
    if chat:
        check_content_parts(body, variant_name, variant)
    return sequences


def resender(
    gateway: GatewayState, request: Request, exchange: Exchange, path: str, client_body: dict, chat: bool, key_id: str
) -> Resend:
    """The cascade's second ask: the client's request, bounded and sent as usual, to another variant."""

    async def ask(variant: str) -> Response:
        body = dict(client_body)
        bound_request(gateway, request, body, chat, variant)
        backend = gateway.backends[variant]
        upstream_body = dict(body, model=backend.served_model, cache_salt=gateway.cache_salt.for_key(key_id))
        return await forward(
            gateway, exchange, path, upstream_body, plan_logprobs(upstream_body, chat), receive=request.receive
        )

    return ask


async def serve(request: Request, gateway: GatewayState, body: dict, chat: bool) -> Response:
    path = "/v1/chat/completions" if chat else "/v1/completions"
    target = resolve_target(gateway, body["model"], request.headers, body.get("user"))
    guard = RequestGuard(gateway, target, body, chat)  # its domain gate may hand the request to the fallback
    target = guard.target
    stream = bool(body.get("stream"))
    exchange = Exchange(gateway, target, request.state.request_id, path, stream)
    guard.attach(exchange)
    exchange.keep_routed_experts = request.headers.get(KEEP_HEADER, "").lower() == "keep"
    client_body = dict(body)  # as sent: a cascade bounds it again for its fallback
    backend = exchange.backend
    key_id = getattr(request.state, "key_id", ANONYMOUS)
    exchange.key_id = key_id
    if gateway.settings.log_text:  # off by default: prompts may hold patient data
        exchange.text["prompt_text"] = body.get("messages") if chat else body.get("prompt")
    try:
        sequences = bound_request(gateway, request, body, chat, target.variant)
        if not backend.up:
            raise backend_unavailable(backend)
        # Without keys every client is "anonymous": one shared per-key budget would only shrink capacity.
        exchange.hold(
            gateway.admission.admit(
                backend, None if key_id == ANONYMOUS else key_id, sequences, gateway.settings.max_in_flight_per_key
            )
        )
        # The client's cache_salt (if any) is replaced: the prefix cache is shared only within one key.
        upstream_body = dict(body, model=backend.served_model, cache_salt=gateway.cache_salt.for_key(key_id))
        plan = plan_logprobs(upstream_body, chat)
        if not stream:
            response: Response = await forward(gateway, exchange, path, upstream_body, plan, receive=request.receive)
            if guard.active:
                response = await guard.after_answer(
                    exchange, response, resender(gateway, request, exchange, path, client_body, chat, key_id)
                )
            exchange.end(response.status_code)
            return response
        client_wants_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        upstream_body["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
        return guard.on_stream(
            await open_stream(gateway, exchange, path, upstream_body, plan, client_wants_usage, receive=request.receive)
        )
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
