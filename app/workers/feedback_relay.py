"""Feedback reaches the worker that served the answer: live re-certification joins them in that process.

Each worker keeps the answers it served in its own memory (app/reliability/live.py),
but the shared socket hands a client's POST /v1/feedback to any worker. So a worker
whose own answer to a feedback lacks the live join (a 404 `completion_not_found`,
or an experiment's 200 without `label_status`) asks the other workers, over their
private Unix sockets (made by the supervisor in its 0700 run directory), with the
client's own headers: the peer authenticates the key again and records the label on
the answer it served. A relayed request carries RELAYED and is never relayed on. The
experiment part is recorded once: the store keeps the first feedback per (id, key).
The client gets the peer's answer (a 404 here) or this worker's with the live fields
merged in (an experiment's 200); a peer that does not answer leaves this worker's.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import httpx

FEEDBACK_PATH = "/v1/feedback"
RELAYED = b"x-moeprune-relayed"
PEER_TIMEOUT_S = 10.0
NOT_FORWARDED = {b"host", b"content-length", b"connection", b"transfer-encoding", b"keep-alive"}
LIVE_FIELDS = ("domain", "label_status")


class Captured:
    """A response held back (feedback answers are one small JSON body)."""

    def __init__(self) -> None:
        self.status, self.body = 0, b""
        self.headers: list[tuple[bytes, bytes]] = []

    async def send(self, message) -> None:
        if message["type"] == "http.response.start":
            self.status, self.headers = message["status"], list(message.get("headers", []))
        elif message["type"] == "http.response.body":
            self.body += message.get("body", b"")

    def json(self) -> dict:
        with contextlib.suppress(ValueError, UnicodeDecodeError):
            value = json.loads(self.body)
            if isinstance(value, dict):
                return value
        return {}

    def with_body(self, status: int, body: bytes) -> Captured:
        other = Captured()
        other.status, other.body = status, body
        other.headers = [(name, value) for name, value in self.headers if name.lower() != b"content-length"]
        other.headers.append((b"content-length", str(len(body)).encode()))
        return other

    async def replay(self, send) -> None:
        await send({"type": "http.response.start", "status": self.status, "headers": self.headers})
        await send({"type": "http.response.body", "body": self.body})


class Peers:
    """The other workers' private sockets, and one HTTP client per socket (opened when first needed)."""

    def __init__(self, paths: list[Path]) -> None:
        self.paths = paths
        self.clients: dict[Path, httpx.AsyncClient] = {}

    def client(self, path: Path) -> httpx.AsyncClient:
        client = self.clients.get(path)
        if client is None:
            client = self.clients[path] = httpx.AsyncClient(
                transport=httpx.AsyncHTTPTransport(uds=str(path)), base_url="http://worker", timeout=PEER_TIMEOUT_S
            )
        return client

    async def close(self) -> None:
        for client in self.clients.values():
            await client.aclose()
        self.clients.clear()


class FeedbackRelay:
    """ASGI middleware, innermost (after the key check and the body bound): see the module's docstring."""

    def __init__(self, app, peers: Peers) -> None:
        self.app, self.peers = app, peers

    async def __call__(self, scope, receive, send) -> None:
        if (
            scope["type"] != "http"
            or scope["path"] != FEEDBACK_PATH
            or scope["method"] != "POST"
            or not self.peers.paths
            or any(name == RELAYED for name, _ in scope["headers"])
        ):
            await self.app(scope, receive, send)
            return
        message = await receive()  # BodyCap (outside) has read the whole body: one message
        replayed = False

        async def replay():
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return message

        local = Captured()
        await self.app(scope, replay, local.send)
        answer = local.json()
        missing = (local.status == 404 and (answer.get("error") or {}).get("code") == "completion_not_found") or (
            local.status == 200 and "label_status" not in answer
        )
        if missing and message["type"] == "http.request" and not message.get("more_body"):
            local = await self._with_peer(scope, message.get("body", b""), local, answer)
        await local.replay(send)

    async def _with_peer(self, scope, body: bytes, local: Captured, answer: dict) -> Captured:
        headers = [(name, value) for name, value in scope["headers"] if name.lower() not in NOT_FORWARDED]
        headers.append((RELAYED, b"1"))
        for peer in self.peers.paths:
            try:
                response = await self.peers.client(peer).post(FEEDBACK_PATH, content=body, headers=headers)
            except httpx.HTTPError:
                continue  # a worker being replaced: the others may still know the answer
            if response.status_code == 404:
                continue
            if local.status == 404:
                return local.with_body(response.status_code, response.content)
            with contextlib.suppress(ValueError):
                theirs = response.json()
                if response.status_code == 200 and all(field in theirs for field in LIVE_FIELDS):
                    merged = {**answer, **{field: theirs[field] for field in LIVE_FIELDS}}
                    return local.with_body(200, json.dumps(merged, separators=(",", ":")).encode())
        return local
