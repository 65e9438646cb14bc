"""Client disconnects, slow readers and the request deadline end the upstream request and free the slot.

Real sockets everywhere: a real uvicorn gateway in this process in front of a
scripted loopback engine (tests/support/fake_engine.py) for the exact orderings,
and the shared real gateway with real vLLM CPU engines for the engine's own
view (its `vllm:num_requests_running`) and the gateway process's connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import time
from dataclasses import replace

import httpx
import psutil
import pytest
import yaml

from tests.app.in_process_gateway import AccessRecords, in_process_gateway
from tests.support.fake_engine import Answer, EngineConfig, FakeEngine, Rule, says
from tests.support.loopback import established_to, raw_request, served, wait_until

pytestmark = pytest.mark.timeout(300)

COMPLETIONS = "/v1/completions"
# The prompt picks the engine's behaviour (the gateway forwards it untouched).
TICKING = Answer(pieces=(" tick",), lasts_s=30, interval_s=0.1)  # streamed: a tick every 0.1 s; else the answer at 30 s
SCRIPT = [
    Rule(says("late-headers"), replace(TICKING, delay_s=3)),  # an engine busy before it starts answering
    Rule(says("slow"), TICKING),
    Rule(says("big"), Answer(pieces=("x" * 4096,), lasts_s=30)),
]  # 4 KiB chunks as fast as the socket takes


@pytest.fixture
async def stub():
    # Every answer closes its connection, so an ESTABLISHED connection to the engine is one still in use.
    engine = FakeEngine(EngineConfig(rules=SCRIPT, close_connections=True))
    async with served(engine) as url:
        engine.url, engine.port = url, int(url.rsplit(":", 1)[1])
        yield engine


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


async def open_client(url: str, body: dict, rcvbuf: int | None = None):
    sock = socket.socket()
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)  # before connect: it sets the window
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port_of(url)))
    reader, writer = await asyncio.open_connection(sock=sock)
    writer.write(raw_request(COMPLETIONS, body))
    await writer.drain()
    return reader, writer


async def assert_upstream_released(stub: FakeEngine, app, records: AccessRecords, status: int, within: float):
    """The engine's request ended because the gateway hung up, no connection to it is left, the slot is free."""
    started = time.monotonic()
    assert await wait_until(lambda: stub.active == 0, within), "the engine is still working for a gone client"
    assert time.monotonic() - started <= within
    assert stub.cancelled == 1, "the engine request must end by the gateway closing it, not by finishing"
    assert await wait_until(lambda: established_to(stub.port) == 0, 2), "an upstream connection leaked"
    backend = app.state.gateway.backends["stub"]
    assert await wait_until(lambda: backend.in_flight == 0, 1)
    assert await wait_until(lambda: status in records.statuses(), 1), records.statuses()


async def test_non_streaming_disconnect_cancels_the_engine_request_within_a_second(stub):
    records = AccessRecords()
    with records.attached():
        async with in_process_gateway(stub.url) as (url, app):
            _, writer = await open_client(url, {"model": "stub", "prompt": "slow", "max_tokens": 5})
            assert await wait_until(lambda: stub.active == 1, 5)
            writer.close()
            await assert_upstream_released(stub, app, records, status=499, within=1.5)


@pytest.mark.parametrize("ordering", ["while the gateway waits for the engine's headers", "mid-stream"])
async def test_streaming_disconnect_closes_the_upstream_response(stub, ordering):
    records = AccessRecords()
    prompt = "late-headers slow" if ordering.startswith("while") else "slow"
    with records.attached():
        async with in_process_gateway(stub.url) as (url, app):
            reader, writer = await open_client(
                url, {"model": "stub", "prompt": prompt, "stream": True, "max_tokens": 5}
            )
            assert await wait_until(lambda: stub.active == 1, 5)
            if ordering == "mid-stream":
                seen = b""
                while b"data:" not in seen:
                    seen += await asyncio.wait_for(reader.read(4096), 5)
            writer.close()
            await assert_upstream_released(stub, app, records, status=499, within=1.5)


async def test_a_reader_that_stops_reading_is_cut_off_and_frees_its_slot(stub):
    records = AccessRecords()
    with records.attached():
        async with in_process_gateway(stub.url, send_timeout_s=0.5) as (url, app):
            # A tiny receive window and no reads: the gateway's writes soon block on this client.
            _, writer = await open_client(
                url, {"model": "stub", "prompt": "big", "stream": True, "max_tokens": 5}, rcvbuf=4096
            )
            assert await wait_until(lambda: stub.active == 1, 5)
            await assert_upstream_released(stub, app, records, status=408, within=15)
            writer.close()


async def test_the_request_deadline_ends_a_non_streaming_request(stub):
    records = AccessRecords()
    with records.attached():
        async with in_process_gateway(stub.url, request_deadline_s=1.0) as (url, app):
            async with httpx.AsyncClient(base_url=url, timeout=10) as client:
                started = time.monotonic()
                response = await client.post(COMPLETIONS, json={"model": "stub", "prompt": "slow", "max_tokens": 5})
            assert time.monotonic() - started < 3
            assert response.status_code == 504
            assert response.json()["error"]["code"] == "request_deadline_exceeded"
            await assert_upstream_released(stub, app, records, status=504, within=1)


async def test_the_request_deadline_ends_a_stream_with_an_error_event(stub):
    records = AccessRecords()
    with records.attached():
        async with in_process_gateway(stub.url, request_deadline_s=1.0) as (url, app):
            async with httpx.AsyncClient(base_url=url, timeout=10) as client:
                started = time.monotonic()
                response = await client.post(
                    COMPLETIONS, json={"model": "stub", "prompt": "slow", "stream": True, "max_tokens": 5}
                )
            assert time.monotonic() - started < 3
            events = [line[6:] for line in response.text.split("\n") if line.startswith("data: ")]
            assert events[-1] == "[DONE]"
            assert json.loads(events[-2])["error"]["code"] == "request_deadline_exceeded"
            assert any("choices" in json.loads(event) for event in events[:-2])  # it did stream until then
            await assert_upstream_released(stub, app, records, status=504, within=1)


# --- real vLLM engines behind the shared real gateway ---------------------------------------------------------


def engine_port(gateway) -> int:
    config = yaml.safe_load(gateway.config_path.read_text())
    return int(config["variants"]["base"]["engine"]["port"])


def requests_running(port: int) -> float:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return sum(float(value) for value in re.findall(r"^vllm:num_requests_running\{[^}]*\} (\S+)$", text, re.M))


# Six long sequences (the base variant's whole budget): several seconds of work for the tiny engine.
LONG_WORK = {
    "model": "base",
    "prompt": ["Tell me a long story about a cat."] * 6,
    "max_tokens": 256,
    "ignore_eos": True,
    "temperature": 1.0,
}


def listener_pid(port: int) -> int:
    """The process listening on `port` (the vLLM API server), whoever its parent is."""
    return next(
        c.pid
        for c in psutil.net_connections(kind="tcp")
        if c.laddr and c.laddr.port == port and c.status == psutil.CONN_LISTEN
    )


async def send_raw(gateway, body: dict) -> asyncio.StreamWriter:
    payload = json.dumps(body).encode()
    _, writer = await asyncio.open_connection("127.0.0.1", port_of(gateway.url))
    writer.write(
        (
            f"POST {COMPLETIONS} HTTP/1.1\r\nHost: g\r\nAuthorization: Bearer {gateway.api_key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
        ).encode()
        + payload
    )
    await writer.drain()
    return writer


async def assert_engine_released(gateway, port: int, baseline: int | None) -> None:
    # Back to zero within about a second (the metric lags the abort by a scheduler step or two).
    assert await wait_until(lambda: requests_running(port) == 0, 2.5, interval=0.1), (
        f"the engine still runs {requests_running(port)} requests for a gone client"
    )
    # The gateway's health probes keep idle pooled connections to the engine; a leaked one is on top of those.
    if baseline is None:
        return
    await asyncio.sleep(1.5)
    assert await wait_until(lambda: established_to(port, gateway.proc.pid) <= baseline, 3, interval=0.1), (
        f"the gateway holds {established_to(port, gateway.proc.pid)} connections to the engine (was {baseline})"
    )


def engine_cores(port: int) -> list[psutil.Process]:
    cores = []
    for child in psutil.Process(listener_pid(port)).children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if "EngineCore" in child.name() or "EngineCore" in " ".join(child.cmdline()):
                cores.append(child)
    return cores


@pytest.mark.slow
async def test_real_engine_aborts_when_a_non_streaming_client_leaves_mid_request(gateway):
    """The tiny engine is too fast to outlast a disconnect, so its engine core is paused mid-generation.

    Its API server stays up: it sees the gateway close the connection and aborts the request. Before the fix
    the gateway kept waiting on that connection for the whole answer, whatever the client did.
    """
    port = engine_port(gateway)
    assert await wait_until(lambda: requests_running(port) == 0, 30, interval=0.25), "engine busy before the test"
    baseline = max(1, established_to(port, gateway.proc.pid))
    cores = engine_cores(port)
    assert cores, "no EngineCore process under the vLLM server"
    writer = await send_raw(gateway, LONG_WORK)
    assert await wait_until(lambda: requests_running(port) > 0, 20, interval=0.02), "the engine never started"
    for core in cores:
        core.suspend()
    try:
        writer.close()
        # Within about a second the gateway has let go of the engine, while the engine is still paused.
        assert await wait_until(lambda: established_to(port, gateway.proc.pid) <= baseline, 1.5, interval=0.05), (
            "the gateway still waits on the engine for a client that has gone"
        )
    finally:
        for core in cores:
            core.resume()
    await assert_engine_released(gateway, port, baseline)


@pytest.mark.slow
async def test_real_engine_aborts_when_a_streaming_client_leaves_before_the_first_byte(gateway):
    """The client leaves while the gateway waits for the engine's response headers.

    The engine's API server is paused (SIGSTOP) so that its headers cannot come before the client has gone:
    the kernel still accepts the gateway's connection and request. Before the fix the gateway then got the
    headers, Starlette never ran the body generator, and the upstream stream was never closed.
    """
    port = engine_port(gateway)
    assert await wait_until(lambda: requests_running(port) == 0, 30, interval=0.25), "engine busy before the test"
    server = psutil.Process(listener_pid(port))
    server.suspend()
    try:
        writer = await send_raw(gateway, {**LONG_WORK, "stream": True})
        await asyncio.sleep(0.5)  # the gateway has read the body and sent it upstream by now
        writer.close()
        await asyncio.sleep(0.3)
    finally:
        server.resume()
    await asyncio.sleep(1.0)  # let the resumed engine take (or refuse) the request
    # No connection count here: probes that hung on the paused server leave extra idle pooled connections
    # behind (legitimately); the loopback stub tests count leaks exactly (their engine closes every connection).
    await assert_engine_released(gateway, port, None)


async def test_a_non_streaming_answer_to_a_client_that_never_reads_is_abandoned(stub):
    """ASGI level (a socket's buffers would swallow this small answer): the body `send` never completes."""
    async with in_process_gateway(stub.url, send_timeout_s=0.3) as (_, app):
        body = json.dumps({"model": "stub", "prompt": "hi", "max_tokens": 5}).encode()
        pending = [{"type": "http.request", "body": body, "more_body": False}]

        async def receive():
            if pending:
                return pending.pop()
            await asyncio.sleep(60)  # connected, silent

        async def send(message):
            if message["type"] == "http.response.body":
                await asyncio.sleep(60)  # the client's window never opens

        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": COMPLETIONS,
            "raw_path": COMPLETIONS.encode(),
            "query_string": b"",
            "root_path": "",
            "client": ("127.0.0.1", 1),
            "server": ("127.0.0.1", 2),
            "headers": [
                (b"host", b"gateway"),
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
        started = time.monotonic()
        await asyncio.wait_for(app(scope, receive, send), 5)
        assert time.monotonic() - started < 2
