"""An ASGI middleware loaded INTO each managed vLLM server (`--middleware`): its key on every route.

vLLM checks its API key only on `/v1`, `/v2`, `/inference` and `/cohere`; its
other routes (`/invocations` runs a full completion, `/tokenize`, `/pooling`,
...) answer anyone who can reach the port. This middleware asks for the same
key (`VLLM_API_KEY`, which the gateway sets to the engine's random key) on
every route but `/health` and `/metrics` (probes and scrapes carry no key), so
a local user on the engine host cannot bypass the gateway through the engine.

It runs in the engine's process, so it imports only the standard library.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os

OPEN_PATHS = frozenset({"/health", "/metrics"})


class KeyOnEveryRoute:
    def __init__(self, app):
        self.app = app
        key = os.environ.get("VLLM_API_KEY", "")
        # A digest of the whole expected header: compared in constant time, whatever its length.
        self.expected = hashlib.sha256(f"Bearer {key}".encode()).digest() if key else None

    def _allowed(self, scope) -> bool:
        if self.expected is None:
            return True
        if scope["type"] == "http" and scope.get("path") in OPEN_PATHS and scope.get("method") in ("GET", "HEAD"):
            return True
        headers = [value for name, value in scope.get("headers") or [] if name == b"authorization"]
        return len(headers) == 1 and hmac.compare_digest(hashlib.sha256(headers[0]).digest(), self.expected)

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket") or self._allowed(scope):
            return await self.app(scope, receive, send)
        if scope["type"] == "websocket":
            return await send({"type": "websocket.close", "code": 1008})
        body = json.dumps(
            {
                "error": {
                    "message": "this engine only answers its gateway",
                    "type": "authentication_error",
                    "param": None,
                    "code": "invalid_api_key",
                }
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})
