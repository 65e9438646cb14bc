"""ASGI middleware: a client that stops reading cannot hold a request (and its engine slot) for ever.

uvicorn's `send` waits while the socket's buffers are full, so a reader that
never reads would park the stream, its upstream connection and its slot. Each
`send` gets `send_timeout_s`; past that the send raises `SendTimedOut` into the
app, whose stream closes its upstream response and frees its slot (status 408
in the access log), and this middleware ends the request: uvicorn then closes
the client's connection because the response is incomplete.
"""

from __future__ import annotations

import asyncio
import logging

from app.errors import SendTimedOut

log = logging.getLogger("moeprune.gateway")


class SendTimeout:
    def __init__(self, app, seconds: float):
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def bounded_send(message):
            try:
                async with asyncio.timeout(self.seconds):
                    await send(message)
            except TimeoutError:
                raise SendTimedOut(f"the client read nothing for {self.seconds:g}s") from None

        try:
            await self.app(scope, receive, bounded_send)
        except SendTimedOut as exc:
            log.warning("slow client: response aborted", extra={
                "request_id": (scope.get("state") or {}).get("request_id"), "path": scope.get("path"),
                "error": str(exc)})
