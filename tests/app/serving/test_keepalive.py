"""Pooled upstream connections: one safe retry when the engine closed one before answering; no 502s at ~5 s gaps.

`RacyEngine` is a raw asyncio HTTP/1.1 server on loopback that makes the
keep-alive race deterministic: it answers the first POST on a connection with
keep-alive, and treats the next POST on that connection as arriving just as
its keep-alive timer fired, closing the socket without a byte of answer (what
uvicorn does at its keep-alive expiry). GETs (the gateway's health probes) are
answered with `Connection: close`, so only the proxied requests are pooled.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time

import httpx
import pytest

from testkit.vllm_server import free_port
from tests.app.in_process_gateway import in_process_gateway

pytestmark = pytest.mark.timeout(300)

COMPLETION = {
    "id": "cmpl-racy",
    "object": "text_completion",
    "created": 1,
    "model": "racy",
    "choices": [{"index": 0, "text": " ok", "logprobs": None, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
}
STREAM = (
    b"data: " + json.dumps({**COMPLETION, "usage": None}).encode() + b"\n\n"
    b'data: {"id":"cmpl-racy","object":"text_completion","created":1,"model":"racy","choices":[],'
    b'"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}\n\n'
    b"data: [DONE]\n\n"
)


class RacyEngine:
    def __init__(self, on_second_post: str = "close") -> None:
        self.on_second_post = on_second_post  # "close": no byte of answer; "partial": half an answer, then close
        self.posts = 0
        self.connections_with_posts = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        posts_here = 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                method = head.split(b" ", 1)[0]
                length = next(
                    (
                        int(line.split(b":", 1)[1])
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length:")
                    ),
                    0,
                )
                body = json.loads(await reader.readexactly(length)) if length else {}
                if method == b"GET":
                    payload = json.dumps({"object": "list", "data": [{"id": "racy"}]}).encode()
                    writer.write(
                        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
                        b"Content-Length: %d\r\n\r\n%s" % (len(payload), payload)
                    )
                    await writer.drain()
                    return
                self.posts += 1
                posts_here += 1
                if posts_here == 1:
                    self.connections_with_posts += 1
                else:
                    if self.on_second_post == "partial":
                        writer.write(
                            b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{"id"'
                        )
                        await writer.drain()
                    return  # the keep-alive timer fired: close
                if body.get("stream"):
                    writer.write(
                        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                        b"Content-Length: %d\r\n\r\n%s" % (len(STREAM), STREAM)
                    )
                else:
                    payload = json.dumps(COMPLETION).encode()
                    writer.write(
                        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                        b"Content-Length: %d\r\n\r\n%s" % (len(payload), payload)
                    )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            writer.close()


@contextlib.asynccontextmanager
async def racy(engine: RacyEngine):
    port = free_port()
    server = await asyncio.start_server(engine.handle, "127.0.0.1", port)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        await server.wait_closed()


async def test_a_pooled_connection_closed_before_the_request_is_retried_once():
    engine = RacyEngine()
    async with racy(engine) as engine_url, in_process_gateway(engine_url) as (url, _):
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            first = await client.post("/v1/completions", json={"model": "stub", "prompt": "a", "max_tokens": 1})
            second = await client.post("/v1/completions", json={"model": "stub", "prompt": "b", "max_tokens": 1})
            third = await client.post(
                "/v1/completions", json={"model": "stub", "prompt": "c", "max_tokens": 1, "stream": True}
            )
    assert [first.status_code, second.status_code, third.status_code] == [200, 200, 200], second.text
    assert "[DONE]" in third.text and '"error"' not in third.text
    # The second and the third each found their pooled connection dead and went again on a fresh one.
    assert engine.posts == 5 and engine.connections_with_posts == 3


async def test_no_retry_once_the_engine_has_started_answering():
    engine = RacyEngine(on_second_post="partial")
    async with racy(engine) as engine_url, in_process_gateway(engine_url) as (url, _):
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            first = await client.post("/v1/completions", json={"model": "stub", "prompt": "a", "max_tokens": 1})
            second = await client.post("/v1/completions", json={"model": "stub", "prompt": "b", "max_tokens": 1})
    assert first.status_code == 200
    assert second.status_code == 502 and second.json()["error"]["code"] == "upstream_failed"
    assert engine.posts == 2  # an answer had begun: the request may have run, so it is not sent again


@pytest.mark.slow
async def test_requests_at_the_engines_keep_alive_interval_never_get_a_502(tiny_vllm_url):
    """Real vLLM (uvicorn, 5 s keep-alive): requests ~5 s apart, the gap at which a 5 s client pool races it."""
    async with in_process_gateway(tiny_vllm_url) as (url, _):
        statuses = []
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            for _ in range(4):
                started = time.monotonic()
                response = await client.post("/v1/completions", json={"model": "stub", "prompt": "Hi", "max_tokens": 2})
                statuses.append(response.status_code)
                await asyncio.sleep(max(0.0, 5.0 - (time.monotonic() - started)))
    assert statuses == [200] * 4


async def test_keep_alive_is_shorter_than_the_engines():
    from app.config.settings import Settings
    from app.serving.client import build_upstream_client

    settings = Settings()
    async with build_upstream_client(settings) as client:
        pool = client._transport._pool
        assert pool._keepalive_expiry == settings.upstream_keepalive_s < 5  # uvicorn's (and vLLM's) default
        timeout = client.timeout
        assert (timeout.connect, timeout.write, timeout.pool) == (
            settings.upstream_connect_timeout_s,
            settings.upstream_write_timeout_s,
            settings.upstream_pool_timeout_s,
        )
