"""A real uvicorn server on loopback for an ASGI app (in a thread), and raw HTTP/1.1 over a socket.

Raw bytes because the cases under test are the ones a well-behaved client
library never sends: Content-Length with chunked, a body longer than declared,
a body that trickles, unnormalised paths.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import uvicorn

from testkit.vllm_server import free_port


@contextlib.contextmanager
def serve_in_thread(app, http: str = "h11", timeout: float = 20) -> Iterator[int]:
    """Serve `app` with uvicorn's `http` implementation on 127.0.0.1; yield the port."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            app, host="127.0.0.1", port=port, http=http, log_level="warning", lifespan="on", access_log=False
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"uvicorn ({http}) did not start on port {port}")
        time.sleep(0.05)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=timeout)


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes


def read_response(sock: socket.socket, timeout: float, head_request: bool = False) -> RawResponse:
    """One response (Content-Length or chunked framing; no body for HEAD), within `timeout`."""
    sock.settimeout(timeout)
    data = _read_until(sock, b"", b"\r\n\r\n")
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if head_request:
        return RawResponse(status, headers, b"")
    if headers.get("transfer-encoding") == "chunked":
        body = b""
        while True:
            rest = _read_until(sock, rest, b"\r\n")
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            while len(rest) < size + 2:
                rest += _recv(sock)
            body, rest = body + rest[:size], rest[size + 2 :]
            if size == 0:
                return RawResponse(status, headers, body)
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        rest += _recv(sock)
    return RawResponse(status, headers, rest[:length])


def _recv(sock: socket.socket) -> bytes:
    chunk = sock.recv(65536)
    if not chunk:
        raise ConnectionError("connection closed before a full response")
    return chunk


def _read_until(sock: socket.socket, data: bytes, marker: bytes) -> bytes:
    while marker not in data:
        data += _recv(sock)
    return data


def exchange(port: int, request: bytes, timeout: float = 5) -> RawResponse:
    """Send `request` (bytes as they go on the wire) and read the one response."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(request)
        return read_response(sock, timeout, head_request=request.startswith(b"HEAD "))


def request_head(method: str, target: str, headers: dict[str, str] | list[tuple[str, str]] = ()) -> bytes:
    items = headers.items() if isinstance(headers, dict) else headers
    lines = [f"{method} {target} HTTP/1.1", "Host: 127.0.0.1", *(f"{name}: {value}" for name, value in items)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def chunked(body: bytes, size: int = 512) -> bytes:
    parts = [body[i : i + size] for i in range(0, len(body), size)]
    return b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in parts) + b"0\r\n\r\n"


def readable(sock: socket.socket, wait: float) -> bool:
    return bool(select.select([sock], [], [], wait)[0])
