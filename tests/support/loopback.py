"""Serve an ASGI app (the fake engine, the gateway) with a real uvicorn on a loopback port, and watch its sockets.

`served` runs the server in the test's own event loop (an async test); `serve_app` in a thread (a sync test,
or an engine that must keep answering while the test's loop is blocked).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator

import psutil
import uvicorn

from testkit.vllm_server import free_port


def _server(app, port: int) -> uvicorn.Server:
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", lifespan="on", timeout_graceful_shutdown=2
    )
    return uvicorn.Server(config)


@contextlib.asynccontextmanager
async def served(app, port: int | None = None) -> AsyncIterator[str]:
    """Serve `app` in this event loop for the duration of the block; yield its base URL."""
    port = port or free_port()
    server = _server(app, port)
    server.install_signal_handlers = lambda: None  # type: ignore[attr-defined]  # pytest keeps its own
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


@contextlib.contextmanager
def serve_app(app, timeout: float = 20) -> Iterator[str]:
    """Serve `app` in a thread for the duration of the block; yield its base URL."""
    server = _server(app, port := free_port())
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


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


def raw_request(path: str, body: dict) -> bytes:
    """A JSON POST as the bytes on the wire, for a client that will misbehave after sending it."""
    payload = json.dumps(body).encode()
    return (
        f"POST {path} HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\n\r\n"
    ).encode() + payload
