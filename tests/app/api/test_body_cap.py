"""The body cap does not trust Content-Length, and slow bodies are bounded: real uvicorn sockets,
under both of uvicorn's HTTP implementations (h11, and httptools which `moeprune serve` picks when installed).

The gateway routes to a `url:` variant nobody listens on; a body that reaches the app names
the unknown model `nope`, so a 404 means the app parsed it.
"""

from __future__ import annotations

import contextlib
import json
import socket
import time

import pytest

from app.config.settings import Settings
from app.config.variants import parse_config
from app.main import create_app
from tests.app.loopback_http import chunked, exchange, read_response, readable, request_head, serve_in_thread

KEY = "body-cap-key-51e0"
CAP = 2048
BODY_TIMEOUT_S = 1.0
AUTH = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}


def body_of(size: int) -> bytes:
    """A valid completions body of exactly `size` bytes, for the unknown model `nope`."""
    head = b'{"model": "nope", "prompt": "'
    return head + b"x" * (size - len(head) - 2) + b'"}'


def gateway():
    settings = Settings(api_keys=KEY, max_request_bytes=CAP, request_body_timeout_s=BODY_TIMEOUT_S)
    return create_app(settings, parse_config({"variants": {"remote": {"url": "http://127.0.0.1:9"}}}))


@pytest.fixture(scope="module", params=["h11", "httptools"])
def port(request):
    with serve_in_thread(gateway(), http=request.param) as bound:
        yield bound


def test_a_small_body_reaches_the_app(port):
    """The control: what the other cases must not look like."""
    response = exchange(port, request_head("POST", "/v1/completions", {**AUTH, "Content-Length": "100"}) + body_of(100))
    assert response.status == 404 and json.loads(response.body)["error"]["code"] == "model_not_found"


def test_content_length_with_chunked_is_refused(port):
    """h11 frames by the chunks and ignores the (small) declared length: a body of any size got through."""
    big = body_of(3 * CAP)
    response = exchange(
        port,
        request_head("POST", "/v1/completions", {**AUTH, "Content-Length": "20", "Transfer-Encoding": "chunked"})
        + chunked(big),
    )
    assert response.status == 400, response.body
    small = body_of(100)
    response = exchange(
        port,
        request_head(
            "POST", "/v1/completions", {**AUTH, "Content-Length": str(len(small)), "Transfer-Encoding": "chunked"}
        )
        + chunked(small),
    )
    assert response.status == 400, "ambiguous framing is refused whatever the sizes"


def test_a_chunked_body_over_the_cap_is_413(port):
    response = exchange(
        port,
        request_head("POST", "/v1/completions", {**AUTH, "Transfer-Encoding": "chunked"}) + chunked(body_of(2 * CAP)),
    )
    assert response.status == 413 and b"request_too_large" in response.body


def test_a_declared_oversize_body_is_413_before_it_is_sent(port):
    response = exchange(
        port, request_head("POST", "/v1/completions", {**AUTH, "Content-Length": str(10 * CAP)}), timeout=3
    )
    assert response.status == 413


def test_bytes_beyond_content_length_never_reach_the_app_as_body(port):
    """The app sees exactly the declared bytes; the rest is not a request, and the connection ends."""
    declared = body_of(100)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(
                request_head("POST", "/v1/completions", {**AUTH, "Content-Length": "100"}) + declared + b"x" * (3 * CAP)
            )
        first = read_response(sock, 5)
        if first.status == 400:  # httptools parses ahead and refuses the whole connection: also fine
            assert first.body == b"Invalid HTTP request received."
            return
        assert first.status == 404  # h11: the 100 declared bytes, parsed as the body
        with contextlib.suppress(ConnectionError, OSError):
            follow_up = read_response(sock, 5)
            assert follow_up.status == 400  # the surplus is garbage, never a second body


@pytest.mark.parametrize("trickle", [False, True], ids=["stalled", "trickling"])
def test_a_slow_body_gets_408_within_the_body_deadline(port, trickle):
    """A body that stalls, or trickles a byte at a time (slowloris), cannot hold a request open."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request_head("POST", "/v1/completions", {**AUTH, "Content-Length": "1000"}) + b'{"model": ')
        answered = False
        for _ in range(40):  # at most 10 s of trickling; the deadline is 1 s
            if trickle:
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    sock.sendall(b" ")
            if readable(sock, 0.25):
                answered = True
                break
        assert answered, "no answer while the body was still arriving"
        response = read_response(sock, 5)
    assert response.status == 408 and b"body_timeout" in response.body
    assert time.monotonic() - started < BODY_TIMEOUT_S + 2


async def test_a_server_delivering_more_than_content_length_is_refused():
    """Defence in depth, in-process: whatever the HTTP server does, the app never sees more than declared."""
    app = gateway()
    messages = [
        {"type": "http.request", "body": body_of(100), "more_body": True},
        {"type": "http.request", "body": b"x" * 100, "more_body": False},
    ]
    sent = []

    async def receive():
        return messages.pop(0)

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/completions",
        "raw_path": b"/v1/completions",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"gateway"),
            (b"authorization", f"Bearer {KEY}".encode()),
            (b"content-type", b"application/json"),
            (b"content-length", b"100"),
        ],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8080),
    }
    await app(scope, receive, send)
    assert sent[0]["status"] == 400
    assert json.loads(sent[1]["body"])["error"]["code"] == "invalid_content_length"
