"""Proxy one streaming request as server-sent events, ending with `data: [DONE]`.

Chunks pass through as they arrive (logprobs trimmed to what the client asked
for). The engine is always asked for usage; its usage chunk carries the
`reliability` object when the client asked for usage too, otherwise a final
chunk with no choices carries it. An engine failure mid-stream ends the stream
with an OpenAI error event instead of hanging.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import httpx
from fastapi.responses import StreamingResponse
from starlette.background import BackgroundTask

from app.api.errors import OpenAIError
from app.core.state import GatewayState
from app.reliability.logprobs import LogprobPlan, TokenTrace
from app.serving.assess import assess
from app.serving.exchange import Exchange
from app.serving.upstream import transport_failure, upstream_error


def sse(payload: dict | str) -> bytes:
    data = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
    return f"data: {data}\n\n".encode()


async def open_stream(gateway: GatewayState, exchange: Exchange, path: str, upstream_body: dict,
                      plan: LogprobPlan, client_wants_usage: bool) -> StreamingResponse:
    backend = exchange.backend
    request = gateway.client.build_request("POST", backend.url + path, json=upstream_body,
                                           timeout=gateway.settings.upstream_timeout_s)
    try:
        response = await gateway.client.send(request, stream=True)
    except httpx.HTTPError as exc:
        raise transport_failure(gateway, backend, exc) from None
    if response.status_code >= 400:
        content = await response.aread()
        await response.aclose()
        raise upstream_error(backend.variant, response.status_code, content)
    headers = exchange.target.headers()
    events = relay(gateway, exchange, response, upstream_body, plan, client_wants_usage)
    # If the client leaves before the first chunk, the relay never runs: the background task
    # still ends the exchange (Exchange.end is idempotent), so no in-flight slot leaks.
    return StreamingResponse(events, media_type="text/event-stream", headers=headers,
                             background=BackgroundTask(exchange.end, 499))


async def relay(gateway: GatewayState, exchange: Exchange, response: httpx.Response, upstream_body: dict,
                plan: LogprobPlan, client_wants_usage: bool) -> AsyncIterator[bytes]:
    trace = TokenTrace()
    usage_chunk, template, status = None, None, 200
    try:
        async for line in response.aiter_lines():
            if not line.startswith("data:"):
                continue
            payload = line[5:].strip()
            if payload == "[DONE]":
                break
            chunk = json.loads(payload)
            template = template or chunk
            if chunk.get("usage"):
                exchange.count_usage(chunk["usage"])
            if not chunk.get("choices"):
                usage_chunk = chunk if chunk.get("usage") else usage_chunk
                continue
            yield sse(prepare_chunk(chunk, exchange, trace, plan, client_wants_usage))
        reliability = await assess(gateway, exchange.target, upstream_body, trace, plan.chat,
                                   exchange.completion_tokens)
        exchange.flags = reliability["flags"]
        exchange.text["completion_text"] = trace.answer
        yield sse(final_chunk(exchange, template, usage_chunk, reliability, client_wants_usage))
        yield sse("[DONE]")
    except (httpx.HTTPError, ValueError) as exc:
        failure = transport_failure(gateway, exchange.backend, exc) if isinstance(exc, httpx.HTTPError) else \
            OpenAIError(502, f"the engine of variant {exchange.target.variant!r} sent a malformed stream")
        status = failure.status
        yield sse(failure.body())
        yield sse("[DONE]")
    except (asyncio.CancelledError, GeneratorExit):
        status = 499  # the client went away mid-stream
        raise
    finally:
        await response.aclose()
        exchange.end(status)


def prepare_chunk(chunk: dict, exchange: Exchange, trace: TokenTrace, plan: LogprobPlan,
                  client_wants_usage: bool) -> dict:
    for choice in chunk["choices"]:
        piece = (choice.get("delta") or {}).get("content") if plan.chat else choice.get("text")
        if piece:
            exchange.mark_first_token()
        if choice.get("index", 0) == 0:  # the verdict judges the first choice
            trace.add_choice(choice, plan.chat)
        plan.strip(choice)
    chunk["model"] = exchange.target.variant
    if not client_wants_usage:
        chunk.pop("usage", None)
    return chunk


def final_chunk(exchange: Exchange, template: dict | None, usage_chunk: dict | None, reliability: dict,
                client_wants_usage: bool) -> dict:
    if client_wants_usage and usage_chunk is not None:
        final = usage_chunk
    else:
        template = template or {}
        final = {key: template[key] for key in ("id", "object", "created") if key in template}
        final["choices"] = []
    final["model"] = exchange.target.variant
    final["reliability"] = reliability
    return final
