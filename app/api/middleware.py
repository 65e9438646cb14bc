"""ASGI middleware: a request id on every response, and a hard cap on the request body.

Order (outermost first): `RequestId`, then the API-key check (app/api/auth.py),
then `BodyCap`, so no byte of an unauthenticated body is ever read.

`BodyCap` does not trust Content-Length: h11 accepts Content-Length together
with `Transfer-Encoding: chunked` and then frames by the chunks, so a small
declared length could carry any amount. It refuses that combination, reads
every body itself up to the cap (counting the bytes that really arrive) within
a deadline, and hands the app the body as one message.
"""

from __future__ import annotations

import asyncio
import json

from app.errors import OpenAIError
from app.spans import Spans
from app.trace import CURRENT, trace_context


async def send_error(send, error: OpenAIError, close: bool = False) -> None:
    """Answer with `error` straight from middleware (the app never ran)."""
    body = json.dumps(error.body()).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in error.headers.items()]
    if close:
        # The client may still be sending a body we will not read: end the connection with the answer.
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class RequestId:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        wanted = {b"x-request-id": None, b"traceparent": None, b"tracestate": None}
        for name, value in scope.get("headers") or []:
            if name in wanted and wanted[name] is None:
                wanted[name] = value.decode("latin-1")
        trace = trace_context(wanted[b"x-request-id"], wanted[b"traceparent"], wanted[b"tracestate"])
        request_id = trace.request_id
        tag = (b"x-request-id", request_id.encode("latin-1"))

        async def tagged_send(message):
            if message["type"] == "http.response.start":
                message.setdefault("headers", []).append(tag)
            await send(message)

        # Read per request, not at construction: the gateway's spans may be swapped after create_app (tests).
        gateway = getattr(getattr(scope.get("app"), "state", None), "gateway", None)
        spans = gateway.spans if gateway is not None else Spans(None)  # an app without a gateway: no spans
        # With spans on, the context carries the request span's ids (app/spans.py).
        with spans.request(trace, scope.get("method", ""), scope.get("path", "")) as trace:
            state = scope.setdefault("state", {})
            state["request_id"], state["trace"] = request_id, trace
            # Every engine call made for this request carries the context (app/trace.py).
            token = CURRENT.set(trace)
            try:
                await self.app(scope, receive, tagged_send)
            finally:
                CURRENT.reset(token)


class _TooLarge(Exception):
    pass


class _LongerThanDeclared(Exception):
    pass


class _ClientGone(Exception):
    pass


class BodyCap:
    def __init__(self, app, max_body_bytes: int, body_timeout_s: float):
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.body_timeout_s = body_timeout_s

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = scope.get("headers") or []
        lengths = [value for name, value in headers if name == b"content-length"]
        chunked = any(name == b"transfer-encoding" for name, _ in headers)
        if lengths and chunked:
            return await send_error(
                send,
                OpenAIError(
                    400, "send either Content-Length or Transfer-Encoding, not both", code="ambiguous_body_length"
                ),
                close=True,
            )
        if len(lengths) > 1 or (lengths and not lengths[0].isdigit()):
            return await send_error(
                send, OpenAIError(400, "invalid Content-Length", code="invalid_content_length"), close=True
            )
        declared = int(lengths[0]) if lengths else None
        if declared is not None and declared > self.max_body_bytes:
            return await send_error(send, self._too_large(), close=True)
        if declared is None and not chunked:
            return await self.app(scope, receive, send)  # HTTP/1.1: no length and no chunks is an empty body
        try:
            async with asyncio.timeout(self.body_timeout_s):  # wait_for would run the read in a task of its own
                body = await self._read(receive, declared)
        except _ClientGone:
            return None
        except _TooLarge:
            return await send_error(send, self._too_large(), close=True)
        except _LongerThanDeclared:
            return await send_error(
                send,
                OpenAIError(400, "the request body is longer than its Content-Length", code="invalid_content_length"),
                close=True,
            )
        except TimeoutError:
            return await send_error(
                send,
                OpenAIError(
                    408, f"the request body did not arrive within {self.body_timeout_s:g} s", code="body_timeout"
                ),
                close=True,
            )
        await self.app(scope, _replay(body, receive), send)

    async def _read(self, receive, declared: int | None) -> bytes:
        limit = self.max_body_bytes if declared is None else declared
        parts, seen = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                raise _ClientGone
            part = message.get("body", b"")
            seen += len(part)
            if seen > limit:
                raise _TooLarge if declared is None else _LongerThanDeclared
            parts.append(part)
            if not message.get("more_body"):
                return b"".join(parts)

    def _too_large(self) -> OpenAIError:
        return OpenAIError(
            413,
            f"request body is larger than this gateway's limit of {self.max_body_bytes} bytes; send less",
            code="request_too_large",
        )


def _replay(body: bytes, receive):
    """The whole body as one message, then the server's own receive (which reports a disconnect)."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def replayed():
        return pending.pop() if pending else await receive()

    return replayed
