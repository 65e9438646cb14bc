"""EngineTransport (app/serving/client.py) against scripted loopback HTTP/1.1 servers: framing, pooling, errors.

Each test starts a raw asyncio server whose handler writes exactly the bytes
under test (split across TCP reads where that matters) and drives the
transport the way the gateway does: through `build_upstream_client(Settings())`
(httpx.AsyncClient) or `direct_send`/`send_upstream` (app/serving/upstream.py).
No vLLM; every wait is bounded.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import socket
import struct
import time
from types import SimpleNamespace

import httpx
import pytest

from app.config.settings import Settings
from app.engines.backends import Backend
from app.serving.client import MAX_HEAD_BYTES, READ_HIGH_WATER, build_upstream_client
from app.serving.upstream import AttemptTrace, direct_send, send_upstream
from app.spans import Spans
from testkit.vllm_server import free_port

pytestmark = pytest.mark.timeout(60)

BOUND = 5.0  # no single step of a test may take longer than this
# Waits for the client to close a connection stay below Settings().upstream_keepalive_s (2 s), so a connection
# wrongly pooled (then closed at its keep-alive expiry) cannot pass for one closed at once.
EOF_BOUND = 1.0


class Server:
    """A loopback HTTP/1.1 server: `handler(reader, writer, index)` serves connection number `index`."""

    def __init__(self, handler) -> None:
        self.handler = handler
        self.connections = 0
        self.eof = []  # per connection: an Event set once the client's side closed (EOF or reset)
        self.tasks: set[asyncio.Task] = set()
        self.writers: set[asyncio.StreamWriter] = set()

    async def __aenter__(self) -> Server:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        return self

    async def __aexit__(self, *exc) -> None:
        self.server.close()
        for writer in list(self.writers):  # handlers end on the reset (cancelling them makes asyncio log noise)
            writer.transport.abort()
        if self.tasks:
            _, pending = await asyncio.wait(list(self.tasks), timeout=BOUND)
            for task in pending:
                task.cancel()
        await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.tasks.add(asyncio.current_task())
        index = self.connections
        self.connections += 1
        self.eof.append(asyncio.Event())
        self.writers.add(writer)
        try:
            await self.handler(reader, writer, index)
        except (ConnectionError, asyncio.IncompleteReadError):
            self.eof[index].set()  # the client closed (or reset) the connection under the handler
        finally:
            writer.close()
            self.writers.discard(writer)
            self.tasks.discard(asyncio.current_task())

    async def wait_eof(self, index: int, reader: asyncio.StreamReader) -> None:
        """(In a handler) read until the client closes this connection, then mark it."""
        try:
            while await reader.read(65536):
                pass
        except ConnectionError:
            pass
        self.eof[index].set()


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes, dict, bytes] | None:
    """(method, target, headers, body) of the next request, or None at EOF."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    lines = head[:-4].split(b"\r\n")
    method, target, _ = lines[0].split(b" ", 2)
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower().decode()] = value.strip().decode()
    length = int(headers.get("content-length", "0"))
    body = await reader.readexactly(length) if length else b""
    return method, target, headers, body


def sized(body: bytes, status: str = "200 OK", extra: bytes = b"") -> bytes:
    return (
        b"HTTP/1.1 "
        + status.encode()
        + b"\r\nContent-Type: application/octet-stream\r\n"
        + extra
        + b"Content-Length: %d\r\n\r\n" % len(body)
        + body
    )


async def trickle(writer: asyncio.StreamWriter, pieces, gap: float = 0.01) -> None:
    """Write `pieces` one by one with a pause between, so each arrives in its own TCP read."""
    for piece in pieces:
        writer.write(piece)
        await writer.drain()
        await asyncio.sleep(gap)


def echo_server(counter: list | None = None):
    """Answers every request on a connection (keep-alive) with its own body, Content-Length framed."""

    async def handler(reader, writer, index):
        while (request := await read_request(reader)) is not None:
            if counter is not None:
                counter.append((index, request))
            writer.write(sized(request[3] or request[1]))
            await writer.drain()

    return handler


def client(**settings) -> httpx.AsyncClient:
    return build_upstream_client(Settings(**settings))


async def bounded(awaitable, seconds: float = BOUND):
    return await asyncio.wait_for(awaitable, seconds)


def connection_of(response: httpx.Response):
    """The transport's `_Connection` under a streamed response (httpx wraps our `_Body`)."""
    stream = response.stream
    return getattr(stream, "_stream", stream)._conn


# --- framing -------------------------------------------------------------------------------------------


async def test_content_length_body_and_request_framing():
    seen = []
    async with Server(echo_server(seen)) as server, client() as http:
        body = json.dumps({"prompt": "é" * 10}).encode()
        response = await bounded(
            http.post(server.url + "/v1/completions?x=1", content=body, headers={"content-type": "application/json"})
        )
        assert response.status_code == 200 and response.content == body
        assert response.headers["content-length"] == str(len(body))
        assert response.http_version == "HTTP/1.1" and response.reason_phrase == "OK"
        method, target, headers, sent = seen[0][1]
        assert (method, target, sent) == (b"POST", b"/v1/completions?x=1", body)
        assert headers["content-length"] == str(len(body)) and headers["host"] == f"127.0.0.1:{server.port}"
        assert "transfer-encoding" not in headers

        big = random.randbytes(300_000)  # head and body go out in two writes above 64 KiB
        response = await bounded(http.post(server.url + "/big", content=big))
        assert response.content == big and seen[1][1][3] == big
        assert server.connections == 1


async def test_chunked_body_extensions_trailers_and_split_reads():
    """Several chunks, extensions, trailers, the zero-length final chunk; every piece split across TCP reads;
    then a second request on the same connection proves the parser stopped exactly at the body's end."""

    async def handler(reader, writer, index):
        await read_request(reader)
        await trickle(
            writer,
            [
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n",
                b"Content-Type: text/event-stream\r\n\r\n",
                b"5;name=value\r\nhel",
                b"lo\r",
                b"\n",
                b"1",
                b"0\r\n",
                b"0123456789abcdef\r\n",  # size split: 0x10
                b'3;a=1;b="x"\r\n',
                b"xyz",
                b"\r\n",
                b"0",
                b";last\r\n",
                b"X-Trailer: one\r\n",
                b"X-Other: two\r\n",
                b"\r",
                b"\n",
            ],
        )
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n")
        await writer.drain()
        await server.wait_eof(index, reader)

    async with Server(handler) as server, client() as http:
        response = await bounded(http.get(server.url + "/a"))
        assert response.content == b"hello0123456789abcdefxyz"
        response = await bounded(http.get(server.url + "/b"))
        assert response.content == b"ok"
        assert server.connections == 1


async def test_chunked_body_byte_by_byte():
    body = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (b"a" * 17, b"b", b"c" * 300)) + b"0\r\n\r\n"
    raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + body

    async def handler(reader, writer, index):
        await read_request(reader)
        await trickle(writer, [raw[i : i + 1] for i in range(len(raw))], gap=0.0005)
        while await read_request(reader) is not None:
            writer.write(sized(b"next"))

    async with Server(handler) as server, client() as http:
        async with http.stream("GET", server.url + "/") as response:
            pieces = [piece async for piece in response.aiter_raw()]
        assert b"".join(pieces) == b"a" * 17 + b"b" + b"c" * 300
        assert (await bounded(http.get(server.url + "/"))).content == b"next"
        assert server.connections == 1


async def test_connection_close_response_is_not_reused():
    async def handler(reader, writer, index):
        await read_request(reader)
        writer.write(sized(b"bye %d" % index, extra=b"Connection: close\r\n"))
        await writer.drain()
        await server.wait_eof(index, reader)

    async with Server(handler) as server, client() as http:
        assert (await bounded(http.get(server.url + "/"))).content == b"bye 0"
        await bounded(server.eof[0].wait(), EOF_BOUND)  # the client closed its side too
        assert (await bounded(http.get(server.url + "/"))).content == b"bye 1"
        assert server.connections == 2


async def test_no_length_no_chunked_reads_until_close():
    async def handler(reader, writer, index):
        await read_request(reader)
        await trickle(writer, [b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n", b"part one, ", b"part two"])
        # the server closes (finally: writer.close())

    async with Server(handler) as server, client() as http:
        response = await bounded(http.get(server.url + "/"))
        assert response.content == b"part one, part two"
        assert (await bounded(http.get(server.url + "/"))).content == b"part one, part two"
        assert server.connections == 2

    async def http10(reader, writer, index):  # HTTP/1.0 without keep-alive: also read to the close
        await read_request(reader)
        writer.write(b"HTTP/1.0 200 OK\r\n\r\nold")
        await writer.drain()

    async with Server(http10) as server, client() as http:
        assert (await bounded(http.get(server.url + "/"))).content == b"old"


async def test_no_body_statuses_and_head_then_reuse():
    """204/304 and HEAD (with a Content-Length of the body it would have) carry no body; the next answer on the
    same connection is read intact (nothing of it was taken as the previous body)."""

    async def handler(reader, writer, index):
        while (request := await read_request(reader)) is not None:
            method, target = request[0], request[1]
            if target == b"/204":
                writer.write(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
            elif target == b"/304":
                writer.write(b"HTTP/1.1 304 Not Modified\r\nContent-Length: 42\r\n\r\n")
            elif method == b"HEAD":
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\nTransfer-Encoding: chunked\r\n\r\n")
            else:
                writer.write(sized(b"body of " + target))
            await writer.drain()

    async with Server(handler) as server, client() as http:
        for path in ("/204", "/304"):
            response = await bounded(http.get(server.url + path))
            assert response.content == b""
            assert (await bounded(http.get(server.url + "/after"))).content == b"body of /after"
        response = await bounded(http.head(server.url + "/h"))
        assert response.status_code == 200 and response.content == b""
        assert (await bounded(http.get(server.url + "/after"))).content == b"body of /after"
        assert server.connections == 1


async def test_informational_answer_is_skipped():
    async def handler(reader, writer, index):
        await read_request(reader)
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n" + sized(b"final"))
        await writer.drain()
        await server.wait_eof(index, reader)

    async with Server(handler) as server, client() as http:
        response = await bounded(http.post(server.url + "/", content=b"x"))
        assert response.status_code == 200 and response.content == b"final"


# --- pooling -------------------------------------------------------------------------------------------


async def test_keepalive_reuse_and_expiry():
    async def handler(reader, writer, index):
        while await read_request(reader) is not None:
            writer.write(sized(b"conn %d" % index))
            await writer.drain()
        server.eof[index].set()

    async with Server(handler) as server, client(upstream_keepalive_s=0.3) as http:
        assert (await bounded(http.get(server.url + "/"))).content == b"conn 0"
        assert (await bounded(http.get(server.url + "/"))).content == b"conn 0"
        assert server.connections == 1
        await bounded(server.eof[0].wait(), EOF_BOUND)  # the gateway closes the idle connection at its expiry
        assert (await bounded(http.get(server.url + "/"))).content == b"conn 1"
        assert server.connections == 2


async def test_keepalive_expiry_checked_at_checkout():
    """Even if the expiry timer has not run yet (a busy loop), a connection past its expiry is not used."""
    async with Server(echo_server()) as server, client(upstream_keepalive_s=0.2) as http:
        await bounded(http.get(server.url + "/"))
        time.sleep(0.3)  # blocks the loop: the timer cannot fire before the next checkout
        await bounded(http.get(server.url + "/"))
        assert server.connections == 2


async def test_server_closes_idle_pooled_connection():
    """The server closes a pooled connection while it is idle: the next request opens a fresh one."""

    async def handler(reader, writer, index):
        await read_request(reader)
        writer.write(sized(b"conn %d" % index))
        await writer.drain()
        await asyncio.sleep(0.05)
        # close while the client holds the connection idle in its pool

    async with Server(handler) as server, client() as http:
        assert (await bounded(http.get(server.url + "/"))).content == b"conn 0"
        await asyncio.sleep(0.3)
        assert (await bounded(http.get(server.url + "/"))).content == b"conn 1"
        assert server.connections == 2


async def test_pooled_connection_closed_as_request_arrives_is_retryable():
    """The keep-alive race: the server takes the next request on a reused connection and closes without a byte
    of answer. The transport raises what upstream.py retries, and the trace marks it safe to retry; on a fresh
    connection the same failure is not safe to retry. `send_upstream` retries once and succeeds."""

    async def handler(reader, writer, index):
        if await read_request(reader) is None:
            return
        writer.write(sized(b"first %d" % index))
        await writer.drain()
        await read_request(reader)  # the second request on this connection: close without answering

    async with Server(handler) as server, client() as http:
        await bounded(http.post(server.url + "/", content=b"{}"))
        trace = AttemptTrace()
        request = http.build_request("POST", server.url + "/", content=b"{}", extensions={"trace": trace})
        with pytest.raises(httpx.HTTPError) as caught:
            await bounded(http.send(request))
        assert isinstance(caught.value, (httpx.RemoteProtocolError, httpx.ReadError))
        assert trace.safe_to_retry(caught.value)

    async def fresh_close(reader, writer, index):
        await read_request(reader)

    async with Server(fresh_close) as server, client() as http:
        trace = AttemptTrace()
        request = http.build_request("POST", server.url + "/", content=b"{}", extensions={"trace": trace})
        with pytest.raises(httpx.RemoteProtocolError) as caught:
            await bounded(http.send(request))
        assert not trace.safe_to_retry(caught.value)

    async with Server(handler) as server, client() as http:
        backend = Backend(variant="v", served_model=None, remote_url=server.url)
        gateway = SimpleNamespace(client=http, supervisor=None, spans=Spans())
        first = await bounded(send_upstream(gateway, backend, "/v1/completions", {"a": 1}, stream=False))
        second = await bounded(send_upstream(gateway, backend, "/v1/completions", {"a": 2}, stream=False))
        assert (first.content, second.content) == (b"first 0", b"first 1")
        assert server.connections == 2


async def test_direct_send_like_the_gateway():
    seen = []
    async with Server(echo_server(seen)) as server, client() as http:
        backend = Backend(variant="v", served_model=None, remote_url=server.url, api_key="k")
        for stream in (False, True):
            trace = AttemptTrace()
            response = await bounded(
                direct_send(http, http.engine_transport, backend, "/v1/completions", b'{"x":1}', trace, stream)
            )
            if stream:
                assert await bounded(response.aread()) == b'{"x":1}'
                await response.aclose()
            else:
                assert response.content == b'{"x":1}'
            assert "http11.receive_response_headers.complete" in trace.events
        assert ("connection.connect_tcp.started" in trace.events) is False  # the second reused the first
        headers = seen[0][1][2]
        assert headers["authorization"] == "Bearer k" and headers["content-type"] == "application/json"
        assert server.connections == 1


# --- errors --------------------------------------------------------------------------------------------

MALFORMED = {
    "garbage status line": b"garbage\r\n\r\n",
    "non-numeric status": b"HTTP/1.1 abc OK\r\nContent-Length: 0\r\n\r\n",
    "not HTTP/1.x": b"HTTP/2 200 OK\r\nContent-Length: 0\r\n\r\n",
    "empty status line": b"\r\n\r\n",
    "header without colon": b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
    "bad content-length": b"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n",
    "negative content-length": b"HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\nhello",
    "conflicting content-lengths": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 5\r\n\r\nhello",
    "bad chunk size": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
    "negative chunk size": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n",
    "prefixed chunk size": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n",
    "empty chunk size": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\r\nhello\r\n0\r\n\r\n",
    "chunk longer than declared": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhello\r\n0\r\n\r\n",
    "binary junk": bytes(range(256)) + b"\r\n\r\n",
}


@pytest.mark.parametrize("raw", MALFORMED.values(), ids=MALFORMED.keys())
async def test_malformed_answers_raise_remote_protocol_error(raw):
    async def handler(reader, writer, index):
        await read_request(reader)
        writer.write(raw)
        await writer.drain()
        await server.wait_eof(index, reader)  # the server keeps the connection open: no hang on our side

    async with Server(handler) as server, client() as http:
        with pytest.raises(httpx.RemoteProtocolError):
            await bounded(http.get(server.url + "/"))
        await bounded(server.eof[0].wait(), EOF_BOUND)  # and the connection was closed, not pooled


@pytest.mark.parametrize("how", ["trickled, never ends", "in one write, then ends", "past the read pause"])
async def test_oversized_head_raises_remote_protocol_error(how):
    filler = b"X-Filler: " + b"a" * 1000 + b"\r\n"

    async def handler(reader, writer, index):
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\n")
        if how == "trickled, never ends":
            for _ in range(MAX_HEAD_BYTES // len(filler) + 5):
                writer.write(filler)
                await writer.drain()
                await asyncio.sleep(0.001)
        elif how == "in one write, then ends":
            writer.write(filler * (MAX_HEAD_BYTES // len(filler) + 30) + b"Content-Length: 0\r\n\r\n")
        else:
            writer.write(filler * (2 * READ_HIGH_WATER // len(filler)))
        await writer.drain()
        await server.wait_eof(index, reader)

    async with Server(handler) as server, client() as http:
        with pytest.raises(httpx.RemoteProtocolError):
            await bounded(http.get(server.url + "/"))
        await bounded(server.eof[0].wait(), EOF_BOUND)


def abort(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP reset (SO_LINGER 0), like a killed process whose unread data is discarded."""
    writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


DEATHS = {
    "before any answer": (b"", False),
    "mid head": (b"HTTP/1.1 200 OK\r\nContent-Le", False),
    "mid sized body": (b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"x" * 100, False),
    "mid chunk": (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nabc", False),
    "between chunks": (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n", False),
    "in trailers": (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX-T: 1", False),
    "mid sized body, reset": (b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"x" * 100, True),
    "read-until-close, reset": (b"HTTP/1.1 200 OK\r\n\r\n" + b"x" * 100, True),
}


@pytest.mark.parametrize("sent, reset", DEATHS.values(), ids=DEATHS.keys())
async def test_server_dies_mid_answer(sent, reset):
    async def handler(reader, writer, index):
        await read_request(reader)
        writer.write(sent)
        await writer.drain()
        await asyncio.sleep(0.05)
        if reset:
            abort(writer)

    async with Server(handler) as server, client() as http:
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
            await bounded(http.get(server.url + "/"))
        async with Server(handler) as again:  # streamed, as the gateway forwards streams
            with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
                async with http.stream("GET", again.url + "/") as response:
                    async for _ in response.aiter_raw():
                        pass


async def test_connect_refused_is_connect_error():
    port = free_port()
    async with client() as http:
        with pytest.raises(httpx.ConnectError):
            await bounded(http.get(f"http://127.0.0.1:{port}/"))
        backend = Backend(variant="v", served_model=None, remote_url=f"http://127.0.0.1:{port}")
        with pytest.raises(httpx.ConnectError):
            await bounded(direct_send(http, http.engine_transport, backend, "/x", b"{}", AttemptTrace(), False))


async def test_read_timeouts():
    async def silent(reader, writer, index):
        await read_request(reader)
        await server.wait_eof(index, reader)

    async with Server(silent) as server, client(upstream_timeout_s=0.3) as http:
        started = time.monotonic()
        with pytest.raises(httpx.ReadTimeout):
            await bounded(http.get(server.url + "/"))
        assert time.monotonic() - started < 2
        await bounded(server.eof[0].wait(), EOF_BOUND)

    async def stalls_mid_body(reader, writer, index):
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")
        await writer.drain()
        await server.wait_eof(index, reader)

    async with Server(stalls_mid_body) as server, client(upstream_timeout_s=0.3) as http:
        with pytest.raises(httpx.ReadTimeout):
            await bounded(http.get(server.url + "/"))
        await bounded(server.eof[0].wait(), EOF_BOUND)

    async def slow_but_steady(reader, writer, index):  # the read timeout is the longest gap, not the total
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        await trickle(writer, [b"1\r\nx\r\n"] * 8 + [b"0\r\n\r\n"], gap=0.1)
        await server.wait_eof(index, reader)

    async with Server(slow_but_steady) as server, client(upstream_timeout_s=0.3) as http:
        assert (await bounded(http.get(server.url + "/"))).content == b"x" * 8


@pytest.mark.parametrize("when", ["waiting for the head", "mid body"])
async def test_cancel_closes_the_connection(when):
    async def handler(reader, writer, index):
        if await read_request(reader) is None:
            return
        if index == 0:
            if when == "mid body":
                writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n")
                await writer.drain()
            await server.wait_eof(index, reader)
            return
        writer.write(sized(b"fresh"))
        await writer.drain()
        await server.wait_eof(index, reader)

    async with Server(handler) as server, client() as http:
        got_first = asyncio.Event()

        async def consume():
            async with http.stream("GET", server.url + "/") as response:
                async for _ in response.aiter_raw():
                    got_first.set()

        task = asyncio.create_task(consume())
        if when == "mid body":
            await bounded(got_first.wait())
        else:
            await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await bounded(server.eof[0].wait(), EOF_BOUND)  # the engine sees the gateway close: vLLM aborts the request
        assert (await bounded(http.get(server.url + "/"))).content == b"fresh"
        assert server.connections == 2  # the cancelled connection was not reused


async def test_abandoned_stream_closes_the_connection():
    async def handler(reader, writer, index):
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"a" * 10)
        await writer.drain()
        await server.wait_eof(index, reader)

    async with Server(handler) as server, client() as http:
        async with http.stream("GET", server.url + "/") as response:
            async for piece in response.aiter_raw():
                assert piece == b"a" * 10
                break
        await bounded(server.eof[0].wait(), EOF_BOUND)
        async with http.stream("GET", server.url + "/") as response:
            pass  # closed before reading a byte of the body
        await bounded(server.eof[1].wait(), EOF_BOUND)
        assert server.connections == 2


async def test_slow_consumer_pauses_the_socket():
    """A stream read slowly buffers at most about READ_HIGH_WATER (plus one socket read): the socket is paused
    and the server's writes block, instead of the whole answer piling up in the gateway."""
    total = 48 * 1024 * 1024
    block = random.randbytes(64 * 1024)
    written = [0]
    digest = hashlib.sha256()

    async def handler(reader, writer, index):
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % total)
        while written[0] < total:
            writer.write(block)
            await writer.drain()
            written[0] += len(block)
        await server.wait_eof(index, reader)

    for _ in range(total // len(block)):
        digest.update(block)
    async with Server(handler) as server, client() as http:
        async with http.stream("GET", server.url + "/") as response:
            pieces = response.aiter_raw()
            first = await bounded(pieces.__anext__())
            received = len(first)
            await asyncio.sleep(0.5)  # a slow client: the server keeps writing meanwhile
            conn = connection_of(response)
            assert len(conn.buffer) <= 2 * READ_HIGH_WATER
            assert conn.paused and not conn.transport.is_reading()
            assert written[0] < total  # the server is blocked too (kernel buffers are a few MiB at most)
            got = hashlib.sha256(first)
            async for piece in pieces:
                got.update(piece)
                received += len(piece)
            assert received == total and got.digest() == digest.digest()
        assert server.connections == 1


async def test_concurrent_requests_get_their_own_bodies():
    async def handler(reader, writer, index):
        while (request := await read_request(reader)) is not None:
            body = request[3] * 50
            await asyncio.sleep(random.random() * 0.05)
            if random.random() < 0.5:
                writer.write(sized(body))
                await writer.drain()
            else:
                writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                for start in range(0, len(body), 97):
                    part = body[start : start + 97]
                    writer.write(b"%x\r\n%s\r\n" % (len(part), part))
                    await writer.drain()
                    await asyncio.sleep(0)
                writer.write(b"0\r\n\r\n")
                await writer.drain()

    async with Server(handler) as server, client() as http:
        for round_ in range(3):
            bodies = [f"request {round_}-{i};".encode() for i in range(20)]
            responses = await bounded(
                asyncio.gather(*(http.post(server.url + "/", content=body) for body in bodies)), 15
            )
            assert [r.content for r in responses] == [body * 50 for body in bodies]
        assert server.connections == 20  # later rounds reuse the first round's connections


async def test_write_timeout_and_the_unsent_body_is_dropped():
    """An engine that stops reading: WriteTimeout, and the connection is dropped at once (its unsent bytes are not
    kept queued, and later delivered, for a request that has already failed)."""
    body = b"x" * (64 * 1024 * 1024)  # far more than loopback's socket buffers
    stop_ignoring = asyncio.Event()
    read = [0]

    async def handler(reader, writer, index):
        await reader.readuntil(b"\r\n\r\n")
        await stop_ignoring.wait()
        while data := await reader.read(1 << 20):
            read[0] += len(data)
        server.eof[index].set()

    async with Server(handler) as server, client(upstream_write_timeout_s=0.3) as http:
        with pytest.raises(httpx.WriteTimeout):
            await bounded(http.post(server.url + "/", content=body))
        await asyncio.sleep(0.1)
        stop_ignoring.set()
        await bounded(server.eof[0].wait(), EOF_BOUND)
        assert read[0] < len(body)
