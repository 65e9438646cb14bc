"""The one HTTP client the gateway talks to its engines with (split timeouts, short keep-alive).

It is an `httpx.AsyncClient` (what the serving code, the supervisor and the
checks call), over `EngineTransport`: a small HTTP/1.1 transport on asyncio
protocols. httpcore's pool was most of the gateway's CPU per request (every
request probed each pooled socket with a `select()` to see whether the server
had closed it, wrote head and body in two sends, and went through anyio and
h11 per event); here the event loop tells a connection when its server
closes it, a request goes out in one write, and a response is parsed once.

`https://` engines get TLS from the stdlib `ssl` module on the same asyncio
connections: verification always on (the variant's `tls.ca_file`, else the
system trust store; SNI and hostname check), a failed handshake is a
`ConnectError` (the variant is down -> 503). `http://` stays plain.

What it keeps from httpcore, because the gateway depends on it:
- the exceptions: `ConnectError`/`ConnectTimeout` (engine down -> 503),
  `ReadTimeout`/`WriteTimeout` (504), `RemoteProtocolError`/`ReadError`
  (dropped mid-request -> 502, or one retry, app/serving/upstream.py);
- the trace events that retry decision reads (`connection.connect_tcp.started`
  on a fresh connection, `http11.receive_response_headers.complete`);
- a cancelled or abandoned request closes its connection (vLLM aborts it);
- backpressure: a response is read from the socket only as fast as it is
  consumed (a slow client reading a stream slows the engine's connection).
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx

from app.config.settings import Settings

MAX_HEAD_BYTES = 64 * 1024
READ_HIGH_WATER = 256 * 1024  # buffered response bytes above which the socket is paused
NO_BODY_STATUSES = frozenset({204, 304})
_SIZE, _DATA, _DATA_END, _TRAILERS, _END = range(5)  # where a chunked body's parser stands
HEX_DIGITS = b"0123456789abcdefABCDEF"


def build_upstream_client(settings: Settings, tls: dict[tuple, ssl.SSLContext] | None = None) -> httpx.AsyncClient:
    """Keep-alive shorter than the engine's own (uvicorn: 5 s), so the gateway always closes an idle
    connection before the engine does and a pooled connection never races the server's close.

    `tls`: (scheme, host, port) -> the verifying SSL context for that https engine (app/serving/tls.py);
    an https engine not in it is verified against the system trust store."""
    timeout = httpx.Timeout(
        connect=settings.upstream_connect_timeout_s,
        read=settings.upstream_timeout_s,
        write=settings.upstream_write_timeout_s,
        pool=settings.upstream_pool_timeout_s,
    )
    transport = EngineTransport(keepalive_expiry=settings.upstream_keepalive_s, max_keepalive_connections=256, tls=tls)
    client = EngineClient(transport=transport, timeout=timeout)
    client.engine_transport = transport  # app/serving/upstream.py sends proxied requests straight to it
    return client


class EngineClient(httpx.AsyncClient):
    """An `httpx.AsyncClient` that names its transport, for the proxied requests that skip the client's layers
    (app/serving/upstream.py `direct_send`)."""

    engine_transport: httpx.AsyncBaseTransport | None = None


def body_chunks(response: httpx.Response) -> AsyncIterator[bytes]:
    """The body of a streamed response as it arrives: straight from the engine transport's reader when the
    body is not content-encoded (what `aiter_bytes` would yield, without its three generator layers per
    piece), else through `aiter_bytes`. The caller closes the response."""
    stream = response.stream
    if (
        isinstance(stream, _Body)
        and response.headers.get("content-encoding", "identity") == "identity"
        and not response.is_stream_consumed
    ):
        response.is_stream_consumed = True
        return aiter(stream)
    return response.aiter_bytes()


async def read_body(response: httpx.Response) -> bytes:
    """`await response.aread()`, reading a body of the engine transport straight off its connection."""
    stream = response.stream
    if (
        isinstance(stream, _Body)
        and response.headers.get("content-encoding", "identity") == "identity"
        and not response.is_stream_consumed
    ):
        response.is_stream_consumed = True
        try:
            response._content = await stream.read_all()
        finally:
            await response.aclose()
        return response._content
    return await response.aread()


class _Connection(asyncio.Protocol):
    """One TCP connection: bytes arrive in `buffer`; `closed` is set the moment the server closes."""

    def __init__(self, key: tuple) -> None:
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.closed = False  # the peer closed (or the socket failed): never reused
        self.error: Exception | None = None
        self.waiter: asyncio.Future | None = None
        self.writable: asyncio.Future | None = None
        self.paused = False
        self.expire_at = 0.0
        self.expiry_timer: asyncio.TimerHandle | None = None

    # asyncio.Protocol
    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) > READ_HIGH_WATER and not self.paused:
            self.paused = True
            assert self.transport is not None  # data only arrives after connection_made
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self.closed = True
        self._wake()
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.error = exc
        self._wake()
        if self.writable is not None and not self.writable.done():
            self.writable.set_result(None)

    def pause_writing(self) -> None:
        self.writable = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self.writable is not None and not self.writable.done():
            self.writable.set_result(None)
        self.writable = None

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # used by the transport
    def take(self, count: int | None = None) -> bytes:
        if count is None or count >= len(self.buffer):
            data = bytes(self.buffer)
            self.buffer.clear()
        else:
            data = bytes(self.buffer[:count])
            del self.buffer[:count]
        self._maybe_resume()
        return data

    def consume(self, count: int) -> None:
        """Drop the first `count` buffered bytes (already parsed in place)."""
        del self.buffer[:count]
        self._maybe_resume()

    def _maybe_resume(self) -> None:
        if self.paused and len(self.buffer) <= READ_HIGH_WATER // 4 and not self.closed:
            self.paused = False
            assert self.transport is not None
            self.transport.resume_reading()

    async def wait_data(self, timeout: float | None) -> None:
        """Until more bytes arrive or the connection ends; ReadTimeout after `timeout` seconds.

        A plain timer on the waiter (not an `asyncio.timeout` scope): a stream waits once per token."""
        if self.paused and not self.closed:
            self.paused = False
            assert self.transport is not None
            self.transport.resume_reading()
        loop = asyncio.get_running_loop()
        waiter = self.waiter = loop.create_future()
        timer = None if timeout is None else loop.call_later(timeout, _time_out, waiter)
        try:
            await waiter
        finally:
            self.waiter = None
            if timer is not None:
                timer.cancel()

    async def write(self, data: bytes, timeout: float | None) -> None:
        transport = self.transport
        assert transport is not None  # a connection is only used once connected (_connect)
        if self.closed or transport.is_closing():
            return  # the answer (none) tells: a reused connection the server closed is retried upstream
        transport.write(data)
        if self.writable is not None:
            try:
                async with asyncio.timeout(timeout):
                    await self.writable
            except TimeoutError:
                raise httpx.WriteTimeout("timed out sending the request to the engine") from None

    def close(self) -> None:
        self.closed = True
        if self.expiry_timer is not None:
            self.expiry_timer.cancel()
            self.expiry_timer = None
        if self.transport is not None:
            if self.transport.get_write_buffer_size():
                self.transport.abort()  # close() would still deliver the rest of a request we gave up on
            else:
                self.transport.close()


class _Body(httpx.AsyncByteStream):
    """A response body read off its connection as it is consumed; the connection goes back to the pool
    only once the body was read to its end on a keep-alive connection, else it is closed."""

    def __init__(
        self,
        transport: EngineTransport,
        conn: _Connection,
        length: int | None,
        chunked: bool,
        keep_alive: bool,
        read_timeout: float | None,
    ) -> None:
        self._transport = transport
        self._conn = conn
        self._length = length  # None with chunked, or read-until-close
        self._chunked = chunked
        self._keep_alive = keep_alive
        self._timeout = read_timeout
        self._done = length == 0
        self._closed = False

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._chunked_body() if self._chunked else self._plain_body()

    async def _plain_body(self) -> AsyncIterator[bytes]:
        try:
            if self._length is not None:
                async for piece in self._sized():
                    yield piece
            else:
                async for piece in self._until_close():
                    yield piece
        except BaseException:
            self._release(reuse=False)
            raise
        self._release(reuse=True)

    async def _chunked_body(self) -> AsyncIterator[bytes]:
        """The data of a chunked body: everything already buffered is parsed in one pass and handed on as one
        piece (a stream's events often arrive several to a read), with no generator layers below this one."""
        conn, timeout = self._conn, self._timeout
        state, left = _SIZE, 0  # left: data bytes of the current chunk still to come
        try:
            while True:
                buffer = conn.buffer
                size, pos, out = len(buffer), 0, []
                while pos < size:
                    if state == _DATA:
                        end = min(pos + left, size)
                        out.append(bytes(buffer[pos:end]))
                        left -= end - pos
                        pos = end
                        if not left:
                            state = _DATA_END
                        continue
                    end = buffer.find(b"\r\n", pos)
                    if end < 0:
                        if size - pos > MAX_HEAD_BYTES:
                            raise httpx.RemoteProtocolError("malformed chunked body from the engine")
                        break
                    line = bytes(buffer[pos:end])
                    pos = end + 2
                    if state == _SIZE:
                        size_line = line.split(b";", 1)[0].strip()
                        if not size_line or size_line.translate(None, HEX_DIGITS):  # int() takes "-5", "0x5", "1_0"
                            raise httpx.RemoteProtocolError("malformed chunk size from the engine")
                        left = int(size_line, 16)
                        state = _DATA if left else _TRAILERS
                    elif state == _DATA_END:
                        if line:
                            raise httpx.RemoteProtocolError("malformed chunk end from the engine")
                        state = _SIZE
                    elif not line:  # _TRAILERS: the empty line ends the body
                        state = _END
                        break
                if pos:
                    conn.consume(pos)
                if state == _END:  # read to its end: reusable even if the consumer stops at this last piece
                    self._done = True
                if out:
                    yield out[0] if len(out) == 1 else b"".join(out)
                if state == _END:
                    break
                if conn.closed:  # what is left can never complete
                    raise _incomplete_body(conn)
                await conn.wait_data(timeout)
        except BaseException:
            self._release(reuse=False)
            raise
        self._release(reuse=True)

    async def read_all(self) -> bytes:
        """The whole body at once (a non-streaming answer): a Content-Length body without the iterator layers
        of `aread`, anything else through them."""
        length = self._length
        if self._chunked or length is None:
            return b"".join([piece async for piece in self])
        conn = self._conn
        try:
            while len(conn.buffer) < length:
                if conn.closed:
                    raise _incomplete_body(conn)
                await conn.wait_data(self._timeout)
            data = conn.take(length)
        except BaseException:
            self._release(reuse=False)
            raise
        self._done = True
        self._release(reuse=True)
        return data

    async def _exactly(self, count: int):
        """`count` body bytes as they arrive (a Content-Length body, or one chunk's data)."""
        conn, left = self._conn, count
        while left:
            if conn.buffer:
                piece = conn.take(left)
                left -= len(piece)
                yield piece
                continue
            if conn.closed:
                raise _incomplete_body(conn)
            await conn.wait_data(self._timeout)

    async def _sized(self):
        async for piece in self._exactly(self._length):
            yield piece
        self._done = True

    async def _until_close(self):
        conn = self._conn
        while True:
            if conn.buffer:
                yield conn.take()
                continue
            if conn.closed:
                if conn.error is not None:
                    raise httpx.ReadError(str(conn.error))
                self._done, self._keep_alive = True, False
                return
            await conn.wait_data(self._timeout)

    def _release(self, reuse: bool) -> None:
        if self._closed:
            return
        self._closed = True
        if reuse and self._done and self._keep_alive and not self._conn.closed and not self._conn.buffer:
            self._transport._pool.put(self._conn)
        else:
            self._conn.close()

    async def aclose(self) -> None:
        self._release(reuse=True)  # reuses only a body read to its end


def _time_out(waiter: asyncio.Future) -> None:
    if not waiter.done():
        waiter.set_exception(httpx.ReadTimeout("timed out reading the engine's answer"))


def _incomplete_body(conn: _Connection) -> Exception:
    if conn.error is not None:
        return httpx.ReadError(str(conn.error))
    return httpx.RemoteProtocolError("peer closed connection without sending complete message body")


class _Pool:
    """Idle keep-alive connections per (scheme, host, port), newest first; none older than the expiry."""

    def __init__(self, keepalive_expiry: float, max_keepalive_connections: int) -> None:
        self._keepalive_expiry = keepalive_expiry
        self._max_idle = max_keepalive_connections
        self._idle: dict[tuple, list[_Connection]] = defaultdict(list)
        self._count = 0

    def get(self, key: tuple) -> _Connection | None:
        idle = self._idle.get(key)
        now = time.monotonic()
        while idle:
            conn = idle.pop()
            self._count -= 1
            if conn.expiry_timer is not None:
                conn.expiry_timer.cancel()
                conn.expiry_timer = None
            if conn.closed or conn.buffer or now >= conn.expire_at:
                conn.close()
                continue
            return conn
        return None

    def put(self, conn: _Connection) -> None:
        if self._count >= self._max_idle:
            conn.close()
            return
        conn.expire_at = time.monotonic() + self._keepalive_expiry
        conn.expiry_timer = asyncio.get_running_loop().call_later(self._keepalive_expiry, self._expire, conn)
        self._idle[conn.key].append(conn)
        self._count += 1

    def _expire(self, conn: _Connection) -> None:
        conn.expiry_timer = None
        idle = self._idle.get(conn.key)
        if idle and conn in idle:
            idle.remove(conn)
            self._count -= 1
        conn.close()

    def close(self) -> None:
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()
        self._count = 0


class EngineTransport(httpx.AsyncBaseTransport):
    """HTTP/1.1 keep-alive transport to the engines: plain for http:// URLs, verified TLS for https://."""

    def __init__(
        self,
        keepalive_expiry: float,
        max_keepalive_connections: int = 256,
        tls: dict[tuple, ssl.SSLContext] | None = None,
    ) -> None:
        self._pool = _Pool(keepalive_expiry, max_keepalive_connections)
        self._tls = dict(tls or {})
        self._default_tls: ssl.SSLContext | None = None

    def _tls_context(self, key: tuple) -> ssl.SSLContext:
        context = self._tls.get(key)
        if context is None:  # an https engine without its own CA: the system trust store, still verified
            if self._default_tls is None:
                self._default_tls = ssl.create_default_context()
            context = self._default_tls
        return context

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        stream = request.stream
        if not isinstance(stream, httpx.AsyncByteStream):
            raise TypeError("the engine transport sends async request bodies only")
        _check_scheme(request.url)
        body = b"".join([part async for part in stream])
        return await self.send_raw(
            request.url,
            request.method,
            _request_head(request, body),
            body,
            request.extensions.get("timeout") or {},
            request.extensions.get("trace"),
        )

    async def send_raw(
        self,
        url: httpx.URL,
        method: str,
        head: bytes,
        body: bytes,
        timeouts: dict,
        trace: Callable[[str, dict], Awaitable[None]] | None,
    ) -> httpx.Response:
        """One request whose head (request line, headers, blank line) is already written out: what
        `handle_async_request` sends for an `httpx.Request`, for a caller that never builds one
        (app/serving/upstream.py `direct_send`). The response has no `request`."""
        scheme = _check_scheme(url)
        port = url.port or (80 if scheme == "http" else 443)
        key = (scheme, url.host, port)
        conn = self._pool.get(key)
        if conn is None:
            if trace is not None:
                await trace("connection.connect_tcp.started", {"host": url.host, "port": port})
            context = None if scheme == "http" else self._tls_context(key)
            conn = await _connect(key, url.host, port, timeouts.get("connect"), context)
        try:
            await conn.write(head + body if len(body) < 65536 else head, timeouts.get("write"))
            if len(body) >= 65536:
                await conn.write(body, timeouts.get("write"))
            response = await self._read_head(conn, method, timeouts.get("read"))
        except BaseException:
            conn.close()
            raise
        if trace is not None:
            await trace("http11.receive_response_headers.complete", {})
        return response

    async def _read_head(self, conn: _Connection, method: str, timeout: float | None) -> httpx.Response:
        while True:
            end = conn.buffer.find(b"\r\n\r\n")
            while end < 0:
                if len(conn.buffer) > MAX_HEAD_BYTES:
                    raise httpx.RemoteProtocolError("the engine sent an oversized response head")
                if conn.closed:
                    if conn.buffer:
                        raise httpx.RemoteProtocolError("peer closed connection in the middle of the response head")
                    if conn.error is not None:
                        raise httpx.ReadError(str(conn.error))
                    raise httpx.RemoteProtocolError("Server disconnected without sending a response.")
                await conn.wait_data(timeout)
                end = conn.buffer.find(b"\r\n\r\n")
            if end > MAX_HEAD_BYTES:  # a whole oversized head can arrive in one read
                raise httpx.RemoteProtocolError("the engine sent an oversized response head")
            lines = conn.take(end + 4)[:-4].split(b"\r\n")
            status_line = lines[0].split(b" ", 2)
            try:
                version, status = status_line[0], int(status_line[1])
            except (IndexError, ValueError):
                raise httpx.RemoteProtocolError("malformed status line from the engine") from None
            if not version.startswith(b"HTTP/1."):
                raise httpx.RemoteProtocolError("the engine did not answer in HTTP/1.x")
            if 100 <= status < 200 and status != 101:
                continue  # an informational answer: the real one follows
            reason = status_line[2] if len(status_line) > 2 else b""
            headers = []
            for line in lines[1:]:
                name, sep, value = line.partition(b":")
                if not sep:
                    raise httpx.RemoteProtocolError("malformed header line from the engine")
                headers.append((name.strip(), value.strip()))
            break
        length, chunked, keep_alive = None, False, version == b"HTTP/1.1"
        for name, value in headers:
            lowered = name.lower()
            if lowered == b"content-length":
                # digits only (int() takes "-5", "+5", "1_0"), and repeated ones must agree
                if not value.isdigit() or len(value) > 18 or (length is not None and length != int(value)):
                    raise httpx.RemoteProtocolError("malformed Content-Length from the engine")
                length = int(value)
            elif lowered == b"transfer-encoding":
                chunked = value.lower().endswith(b"chunked")
            elif lowered == b"connection":
                tokens = value.lower()
                if b"close" in tokens:
                    keep_alive = False
                elif b"keep-alive" in tokens:
                    keep_alive = True
        if method == "HEAD" or status in NO_BODY_STATUSES:
            length, chunked = 0, False
        elif chunked:
            length = None
        elif length is None:
            keep_alive = False  # read until the server closes
        stream = _Body(self, conn, length, chunked, keep_alive, timeout)
        return httpx.Response(
            status, headers=headers, stream=stream, extensions={"http_version": version, "reason_phrase": reason}
        )

    async def aclose(self) -> None:
        self._pool.close()


async def _connect(key: tuple, host: str, port: int, timeout: float | None, tls: ssl.SSLContext | None) -> _Connection:
    """A new connection; with `tls`, after a verified handshake (SNI and hostname check: `host`)."""
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(timeout):
            _, conn = await loop.create_connection(
                lambda: _Connection(key), host, port, ssl=tls, server_hostname=None if tls is None else host
            )
    except TimeoutError:
        raise httpx.ConnectTimeout(f"timed out connecting to {host}:{port}") from None
    except ssl.SSLCertVerificationError as exc:
        raise httpx.ConnectError(
            f"TLS: the certificate of {host}:{port} failed verification "
            f"({exc.verify_message or exc.reason}); check the variant's tls.ca_file "
            "and that the url's host is a name in the certificate"
        ) from None
    except ssl.SSLError as exc:
        raise httpx.ConnectError(
            f"TLS handshake with {host}:{port} failed ({exc.reason or exc}); is the engine serving https?"
        ) from None
    except OSError as exc:
        raise httpx.ConnectError(str(exc)) from None
    return conn


def _check_scheme(url: httpx.URL) -> str:
    scheme = url.scheme
    if scheme != "http" and scheme != "https":
        raise httpx.UnsupportedProtocol(f"the engine transport speaks http and https, not {scheme!r}")
    return scheme


def _request_head(request: httpx.Request, body: bytes) -> bytes:
    target = request.url.raw_path
    lines = [request.method.encode("ascii") + b" " + target + b" HTTP/1.1"]
    has_length = False
    for name, value in request.headers.raw:
        lowered = name.lower()
        if lowered == b"content-length":
            has_length = True
        elif lowered == b"transfer-encoding":
            continue  # the body is sent whole, with its length
        lines.append(name + b": " + value)
    if not has_length and (body or request.method in ("POST", "PUT", "PATCH")):
        lines.append(b"Content-Length: " + str(len(body)).encode("ascii"))
    return b"\r\n".join(lines) + b"\r\n\r\n"
