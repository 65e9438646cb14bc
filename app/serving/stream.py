"""Proxy one streaming request as server-sent events, ending with `data: [DONE]`.

Chunks pass through as they arrive (logprobs trimmed to what the client asked
for). The engine is always asked for usage; its usage chunk carries the
`reliability` object when the client asked for usage too, otherwise a final
chunk with no choices carries it. An engine failure mid-stream (a dropped
connection, a malformed chunk, an error event of the engine's own) ends the
stream with an OpenAI error event and a non-200 status in the access log.

The upstream response belongs to `RelayResponse` from the moment it is opened:
whatever happens next (the client gone before the body starts, mid-stream, a
reader too slow, the request's deadline), its `finally` closes the upstream
connection, so vLLM aborts the request, and ends the exchange, so the slot is freed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable

import httpx
from starlette.responses import Response

from app.errors import OpenAIError, SendTimedOut
from app.reliability.logprobs import LogprobPlan
from app.serving.assess import assess
from app.serving.client import body_chunks
from app.serving.codec import loads
from app.serving.deadline import deadline_exceeded, time_left, within_deadline
from app.serving.disconnect import CLIENT_CLOSED, Receive, until_disconnect
from app.serving.exchange import Exchange
from app.serving.splice import replace_model_key
from app.serving.sse import sse_events
from app.serving.upstream import send_upstream, stream_error, transport_failure, upstream_error
from app.state import GatewayState
from moeprune.reliability.token_trace import TokenTrace

log = logging.getLogger("moeprune.upstream")

SLOW_READER = 408  # access-log status of a stream aborted because its client stopped reading
Emit = Callable[[bytes], Awaitable[None]]


def sse(payload: dict | str) -> bytes:
    data = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
    return f"data: {data}\n\n".encode()


DONE = sse("[DONE]")


async def open_stream(
    gateway: GatewayState,
    exchange: Exchange,
    path: str,
    upstream_body: dict,
    plan: LogprobPlan,
    client_wants_usage: bool,
    receive: Receive | None = None,
) -> Response:
    """Open the upstream stream (raced against the client leaving and the deadline) and hand it over."""
    opening = _open(gateway, exchange, path, upstream_body)
    upstream = await within_deadline(exchange, until_disconnect(receive, opening))
    return RelayResponse(gateway, exchange, upstream, upstream_body, plan, client_wants_usage)


async def _open(gateway: GatewayState, exchange: Exchange, path: str, upstream_body: dict) -> httpx.Response:
    backend = exchange.backend
    upstream = await send_upstream(gateway, backend, path, upstream_body, stream=True)
    if upstream.status_code < 400:
        return upstream
    try:
        content = await upstream.aread()
    finally:
        await upstream.aclose()
    raise upstream_error(backend.variant, upstream.status_code, content, path)


class RelayResponse(Response):
    """A server-sent-events response that owns its upstream response (see the module docstring)."""

    media_type = "text/event-stream"

    def __init__(
        self,
        gateway: GatewayState,
        exchange: Exchange,
        upstream: httpx.Response,
        upstream_body: dict,
        plan: LogprobPlan,
        client_wants_usage: bool,
    ):
        self.status_code = 200
        self.background = None
        self.init_headers(exchange.target.headers())
        self.relay = (gateway, exchange, upstream, upstream_body, plan, client_wants_usage)
        self.exchange, self.upstream = exchange, upstream

    async def __call__(self, scope, receive, send) -> None:
        status = CLIENT_CLOSED  # unless the relay reports otherwise, the client left
        try:
            status = await until_disconnect(receive, self._run(send))
        except OpenAIError as exc:  # the client went away
            status = exc.status
        except SendTimedOut:
            status = SLOW_READER
            raise
        except Exception:
            status = 500
            raise
        finally:
            await self.upstream.aclose()
            self.exchange.end(status)

    async def _run(self, send) -> int:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})

        async def emit(data: bytes) -> None:
            await send({"type": "http.response.body", "body": data, "more_body": True})

        try:
            async with asyncio.timeout(time_left(self.exchange)) as scope:
                status = await relay(*self.relay, emit)
        except TimeoutError:
            if not scope.expired():
                raise
            failure = deadline_exceeded(self.exchange)
            await emit(sse(failure.body()) + DONE)
            status = failure.status
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        return status


async def relay(
    gateway: GatewayState,
    exchange: Exchange,
    upstream: httpx.Response,
    upstream_body: dict,
    plan: LogprobPlan,
    client_wants_usage: bool,
    emit: Emit,
) -> int:
    """Pass the engine's chunks on through `emit`; return the status the access log records.

    The events of one read from the engine go on in one `emit` (one write to the client), and nothing
    is held back across an await: whatever was prepared is sent before the next read."""
    # Only the signals' running totals and the answer's characters: no per-token lists held until the end.
    trace = TokenTrace(keep_tokens=False)
    usage_chunk, template, finished = None, None, False
    variant = exchange.target.variant
    out: list[bytes] = []  # prepared events of the current read, not yet sent
    try:
        async with contextlib.aclosing(sse_events(body_chunks(upstream))) as reads:
            async for events in reads:
                for data in events:
                    if data == b"[DONE]":
                        finished = True
                        break
                    chunk = loads(data)
                    if not isinstance(chunk, dict):
                        raise ValueError("a stream chunk that is not a JSON object")
                    failure = stream_error(variant, chunk)
                    if failure is not None:
                        return await end_with(emit, failure, out)
                    template = template or chunk
                    if exchange.completion_id is None and isinstance(chunk.get("id"), str):
                        exchange.completion_id = chunk["id"]
                    if chunk.get("usage"):
                        exchange.count_usage(chunk["usage"])
                    if not chunk.get("choices"):
                        usage_chunk = chunk if chunk.get("usage") else usage_chunk
                        continue
                    out.append(prepare_event(chunk, data, exchange, trace, plan, client_wants_usage))
                if out:
                    batch = out[0] if len(out) == 1 else b"".join(out)
                    out.clear()
                    await emit(batch)
                if finished:
                    break
        if not finished:  # the engine closed a complete-looking body without its final [DONE]
            log.warning("engine stream ended without [DONE]", extra={"variant": variant})
            return await end_with(
                emit,
                OpenAIError(
                    502, f"the engine of variant {variant!r} ended the stream early; retry", code="upstream_failed"
                ),
                out,
            )
        reliability = await assess(
            gateway,
            exchange.target,
            upstream_body,
            trace,
            plan.chat,
            exchange.completion_tokens,
            exchange.prompt_tokens,
        )
        exchange.flags = reliability["flags"]
        exchange.reliability = reliability
        exchange.text["completion_text"] = trace.answer
        await emit(sse(final_chunk(exchange, template, usage_chunk, reliability, client_wants_usage)) + DONE)
        return 200
    except httpx.HTTPError as exc:
        return await end_with(emit, transport_failure(gateway, exchange.backend, exc), out)
    except ValueError as exc:  # not JSON, not UTF-8, an event too long
        log.warning("malformed engine stream", extra={"variant": variant, "error": str(exc)[:500]})
        return await end_with(
            emit,
            OpenAIError(
                502, f"the engine of variant {variant!r} sent a malformed stream; retry", code="upstream_failed"
            ),
            out,
        )


async def end_with(emit: Emit, failure: OpenAIError, prepared: list[bytes] | None = None) -> int:
    """The events already prepared (they came before the failure), then the error event and [DONE]."""
    await emit(b"".join(prepared or ()) + sse(failure.body()) + DONE)
    return failure.status


def prepare_chunk(
    chunk: dict, exchange: Exchange, trace: TokenTrace, plan: LogprobPlan, client_wants_usage: bool
) -> dict:
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


def prepare_event(
    chunk: dict, data: bytes, exchange: Exchange, trace: TokenTrace, plan: LogprobPlan, client_wants_usage: bool
) -> bytes:
    """The client's event for one chunk with choices (`data`: the engine's JSON of `chunk`).

    When the gateway would change nothing in the chunk but its `model` (no usage to drop, no logprobs to
    trim), the engine's own bytes go on, with the variant's name spliced in where the engine's served name
    stands, instead of `json.dumps` of the parsed chunk: the same JSON value. Only for data that `sse()`
    could not write differently in a way a client could notice: all ASCII (`json.dumps` escapes the rest,
    which keeps U+2028 and friends out of the stream) and on one line with no bare CR (an event's data
    spread over several `data:` lines is joined by newlines)."""
    variant = exchange.target.variant
    model = chunk.get("model")
    same = (
        (client_wants_usage or "usage" not in chunk)
        and isinstance(model, str)
        and data.isascii()
        and b"\n" not in data
        and b"\r" not in data
    )
    if same and isinstance(model, str) and model != variant:
        # The engine's served name -> the variant's, spliced into its bytes when `"model"` occurs exactly
        # once, as `"model":"<served>"` right after `{` or `,` (so a key, not the end of a string: an
        # unescaped quote ends a string and JSON allows no `model` after one); else re-encoded.
        renamed = replace_model_key(data, model, variant)
        same = renamed is not None
        if renamed is not None:
            data = renamed
    chat = plan.chat
    for choice in chunk["choices"]:
        piece = (choice.get("delta") or {}).get("content") if chat else choice.get("text")
        if piece:
            exchange.mark_first_token()
        if choice.get("index", 0) == 0:  # the verdict judges the first choice
            trace.add_choice(choice, chat)
        if same and plan.keeps(choice):
            continue
        same = False
        plan.strip(choice)
    if same:
        return b"data: " + data + b"\n\n"
    chunk["model"] = variant
    if not client_wants_usage:
        chunk.pop("usage", None)
    return sse(chunk)


def final_chunk(
    exchange: Exchange, template: dict | None, usage_chunk: dict | None, reliability: dict, client_wants_usage: bool
) -> dict:
    if client_wants_usage and usage_chunk is not None:
        final = usage_chunk
    else:
        template = template or {}
        final = {key: template[key] for key in ("id", "object", "created") if key in template}
        final["choices"] = []
    final["model"] = exchange.target.variant
    final["reliability"] = reliability
    return final
