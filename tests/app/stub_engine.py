"""Loopback helpers for the disconnect / stream / keep-alive tests: a scripted engine and an in-process gateway.

`StubEngine` is a tiny OpenAI-shaped ASGI app served by a real uvicorn on a
loopback port; the prompt picks its behaviour (the gateway forwards the prompt
untouched, whatever fields it strips):

- "slow": non-streaming, answers only after 30 s; streaming, one chunk every 0.1 s for 30 s
- "late-headers": streaming, response headers only after 3 s, then like "slow"
- "big": streaming, 4 KiB chunks as fast as the socket takes them, for 30 s
- "separators": streaming, tokens holding raw U+2028, U+2029 and U+0085 (as vLLM sends them: unescaped)
- "error": streaming, one chunk and then an engine error event, as vLLM does when its engine core dies
- "fail": non-streaming, a 500 whose body holds internal details
- anything else: a short answer

Every answer carries `Connection: close`. It counts requests in progress (`active`) and requests that ended because the
gateway hung up (`cancelled`), which is how a test sees an upstream abort.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator

import psutil
import uvicorn

from testkit.vllm_server import free_port

# Every answer closes its connection, so an ESTABLISHED connection to the stub is one still in use:
# after a request has ended, any left is a leak (not an idle pooled connection).
CLOSE = (b"connection", b"close")
SEPARATORS = "a\u2028b\u2029c\u0085d"
SECRET_DETAIL = "Traceback at /opt/internal/engine.py on http://10.1.2.3:8000"


async def read_json(receive) -> dict:
    """The whole ASGI request body, parsed as JSON."""
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            return json.loads(body)


async def send_json(send, status: int, payload: dict) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), CLOSE]})
    await send({"type": "http.response.body", "body": json.dumps(payload).encode()})


def chunk(text: str, finish: str | None = None) -> bytes:
    body = {"id": "cmpl-stub", "object": "text_completion", "created": 1, "model": "stub",
            "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish}]}
    # ensure_ascii=False: vLLM leaves U+2028 and friends unescaped inside JSON strings.
    return b"data: " + json.dumps(body, ensure_ascii=False).encode() + b"\n\n"


USAGE = (b'data: {"id":"cmpl-stub","object":"text_completion","created":1,"model":"stub","choices":[],'
         b'"usage":{"prompt_tokens":1,"completion_tokens":3,"total_tokens":4}}\n\n')


class StubEngine:
    def __init__(self) -> None:
        self.active = 0
        self.cancelled = 0
        self.requests: list[dict] = []

    async def __call__(self, scope, receive, send):
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            return await send({"type": "lifespan.shutdown.complete"})
        path = scope["path"]
        if path == "/health":
            return await self._json(send, 200, {})
        if path == "/v1/models":
            return await self._json(send, 200, {"object": "list", "data": [{"id": "stub", "object": "model"}]})
        request = await read_json(receive)
        self.requests.append(request)
        self.active += 1
        work = asyncio.ensure_future(self._answer(request, send))
        gone = asyncio.ensure_future(self._wait_disconnect(receive))
        try:
            await asyncio.wait((work, gone), return_when=asyncio.FIRST_COMPLETED)
            if not work.done():
                self.cancelled += 1
        finally:
            for task in (work, gone):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            self.active -= 1

    @staticmethod
    async def _wait_disconnect(receive):
        while (await receive())["type"] != "http.disconnect":
            pass

    @staticmethod
    async def _json(send, status: int, payload: dict) -> None:
        await send_json(send, status, payload)

    async def _answer(self, request: dict, send) -> None:
        prompt = request.get("prompt")
        prompt = prompt if isinstance(prompt, str) else json.dumps(prompt)
        if not request.get("stream"):
            if "fail" in prompt:
                return await self._json(send, 500, {"error": {"message": SECRET_DETAIL, "code": 500}})
            if "slow" in prompt:
                await asyncio.sleep(30)
            return await self._json(send, 200, {
                "id": "cmpl-stub", "object": "text_completion", "created": 1, "model": "stub",
                "choices": [{"index": 0, "text": " done", "logprobs": None, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})
        if "late-headers" in prompt:  # an engine busy before it starts answering
            await asyncio.sleep(3)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream"), CLOSE]})
        async for data in self._events(prompt):
            await send({"type": "http.response.body", "body": data, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _events(self, prompt: str) -> AsyncIterator[bytes]:
        if "separators" in prompt:
            yield chunk(SEPARATORS)
            yield chunk(" end", "stop")
        elif "error" in prompt:
            yield chunk("partial")
            yield (b'data: {"error":{"message":"EngineCore encountered an issue. See /var/log/x for details.",'
                   b'"type":"InternalServerError","param":null,"code":500}}\n\n')
        elif "slow" in prompt:
            for _ in range(300):
                yield chunk(" tick")
                await asyncio.sleep(0.1)
        elif "big" in prompt:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                yield chunk("x" * 4096)
                await asyncio.sleep(0)
        else:
            yield chunk(" hello")
            yield chunk(" world", "stop")
        yield USAGE
        yield b"data: [DONE]\n\n"


@contextlib.asynccontextmanager
async def served(app, port: int | None = None) -> AsyncIterator[str]:
    """Serve an ASGI app with a real uvicorn on loopback for the duration of the block."""
    port = port or free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on",
                            timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # uvicorn >= 0.29 uses capture_signals; harmless either way
    task = asyncio.create_task(server.serve())
    for _ in range(200):
        if server.started or task.done():
            break
        await asyncio.sleep(0.05)
    if not server.started:
        task.result()
        raise RuntimeError("uvicorn did not start")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 10)


async def wait_until(predicate, timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(interval)
    return predicate()


def established_to(port: int, pid: int | None = None) -> int:
    """ESTABLISHED TCP connections of process `pid` (default: this one) whose remote end is `port`."""
    connections = psutil.Process(pid).net_connections(kind="tcp")
    return sum(1 for c in connections if c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED)


class AccessRecords(logging.Handler):
    """Collects the gateway's access-log records (its loggers do not propagate to pytest's caplog)."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def statuses(self) -> list[int]:
        return [record.status for record in self.records if hasattr(record, "status")]

    @contextlib.contextmanager
    def attached(self, name: str = "moeprune.access"):
        logger = logging.getLogger(name)
        logger.addHandler(self)
        try:
            yield self
        finally:
            logger.removeHandler(self)


@contextlib.asynccontextmanager
async def in_process_gateway(upstream_url: str, variant: dict | None = None, **settings) -> AsyncIterator[tuple]:
    """A real gateway app (real uvicorn, loopback, no keys) with one `url:` variant `stub`; yields (url, app)."""
    from app.config.settings import Settings
    from app.config.variants import parse_config
    from app.main import create_app

    options = {"health_interval_s": 0.2, **settings}
    config = parse_config({"variants": {"stub": {"url": upstream_url, **(variant or {})}}})
    app = create_app(Settings(**options), config)
    async with served(app) as url:
        backend = app.state.gateway.backends["stub"]
        if not await wait_until(lambda: backend.up, timeout=20):
            raise RuntimeError(f"the stub variant never came up: {backend.last_error}")
        yield url, app


def raw_request(path: str, body: dict) -> bytes:
    payload = json.dumps(body).encode()
    return (f"POST {path} HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\n\r\n").encode() + payload
