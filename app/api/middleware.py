"""ASGI middleware: a request id on every request, and a hard cap on request body size.

The size cap is checked against Content-Length, and a chunked body (no
Content-Length) is read up to the cap before the app sees it, so a chunked
upload cannot exceed it either.
"""

from __future__ import annotations

import json
import uuid

from app.api.errors import OpenAIError


def _replay(messages: list[dict], receive):
    pending = list(messages)

    async def replayed():
        return pending.pop(0) if pending else await receive()

    return replayed


class RequestGuard:
    def __init__(self, app, max_body_bytes: int):
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        request_id = headers.get(b"x-request-id", b"").decode("latin-1")[:64] or uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        declared = headers.get(b"content-length")
        if declared and declared.isdigit() and int(declared) > self.max_body_bytes:
            return await self._too_large(send, request_id)
        if declared is None and scope.get("method") in ("POST", "PUT", "PATCH"):
            # A chunked body has no declared size: read it here (up to the cap) and replay it,
            # because FastAPI would turn an error raised while it reads the body into a 400.
            buffered = await self._read_capped(receive)
            if buffered is None:
                return await self._too_large(send, request_id)
            receive = _replay(buffered, receive)

        async def tagged_send(message):
            if message["type"] == "http.response.start":
                message.setdefault("headers", []).append((b"x-request-id", request_id.encode("latin-1")))
            await send(message)

        await self.app(scope, receive, tagged_send)

    async def _read_capped(self, receive) -> list[dict] | None:
        messages, seen = [], 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                return messages
            seen += len(message.get("body", b""))
            if seen > self.max_body_bytes:
                return None
            if not message.get("more_body"):
                return messages

    async def _too_large(self, send, request_id: str):
        error = OpenAIError(413, f"request body is larger than this gateway's limit of {self.max_body_bytes} "
                                 "bytes; send less", code="request_too_large")
        body = json.dumps(error.body()).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"x-request-id", request_id.encode("latin-1"))]})
        await send({"type": "http.response.body", "body": body})
