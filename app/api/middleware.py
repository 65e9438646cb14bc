"""ASGI middleware: a request id on every request, and a hard cap on request body size.

The size cap is enforced while the body streams in (not only from
Content-Length), so a chunked upload cannot exceed it either.
"""

from __future__ import annotations

import json
import uuid

from app.api.errors import OpenAIError


class BodyTooLarge(Exception):
    pass


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
        seen = 0
        started = False

        async def counted_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body_bytes:
                    raise BodyTooLarge()
            return message

        async def tagged_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message.setdefault("headers", []).append((b"x-request-id", request_id.encode("latin-1")))
            await send(message)

        try:
            await self.app(scope, counted_receive, tagged_send)
        except BodyTooLarge:
            if not started:
                await self._too_large(send, request_id)

    async def _too_large(self, send, request_id: str):
        error = OpenAIError(413, f"request body is larger than this gateway's limit of {self.max_body_bytes} "
                                 "bytes; send less", code="request_too_large")
        body = json.dumps(error.body()).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"x-request-id", request_id.encode())]})
        await send({"type": "http.response.body", "body": body})
