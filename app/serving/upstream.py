"""Talk to an engine, and map what can go wrong on the way to the gateway's documented statuses.

Connection refused: the engine is down -> 503 (and the backend is marked down
until its health check passes again). Connection dropped mid-request: 502.
No answer in time: 504. Engine 4xx: passed through in OpenAI shape. Engine 5xx
and error events inside a stream: 502.

Messages to clients name the variant and nothing else: engine URLs, exception
text and engine log lines go to the gateway log (`moeprune.upstream`), where
the request id ties them to the access-log line.
"""

from __future__ import annotations

import json
import logging

import httpx

from app.engines.backends import Backend
from app.errors import OpenAIError
from app.serving.client import EngineTransport, read_body
from app.state import GatewayState

log = logging.getLogger("moeprune.upstream")

RETRY_AFTER_DOWN_S = "5"
# A pooled connection the engine closed while it sat idle fails like this before any answer byte.
RETRYABLE = (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)


class AttemptTrace:
    """httpcore's trace hook for one attempt: did it open a new connection, did any answer arrive?"""

    def __init__(self) -> None:
        self.events: set[str] = set()

    async def __call__(self, name: str, info: dict) -> None:
        self.events.add(name)

    def safe_to_retry(self, exc: httpx.HTTPError) -> bool:
        """True when the request went out on a reused connection that died before any answer.

        The engine (uvicorn) only closes a keep-alive connection while no request is in progress on
        it, so a reused connection that ends without a single response byte never started our
        request: sending it again cannot run it twice. A fresh connection failing proves nothing.
        """
        reused = "connection.connect_tcp.started" not in self.events
        answered = "http11.receive_response_headers.complete" in self.events
        return isinstance(exc, RETRYABLE) and reused and not answered


async def send_upstream(
    gateway: GatewayState, backend: Backend, path: str, body: dict, *, stream: bool
) -> httpx.Response:
    """POST `body` to the backend (its key in the headers); one retry on a pooled connection that was
    already dead. With `stream=True` the caller owns the response and must close it."""
    content = json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
    with gateway.spans.engine_call(backend.variant, path):
        return await _send_with_retry(gateway, backend, path, content, stream)


async def _send_with_retry(
    gateway: GatewayState, backend: Backend, path: str, content: bytes, stream: bool
) -> httpx.Response:
    client = gateway.client
    if client is None:  # set by the app's lifespan (app/main.py) before the first request
        raise RuntimeError("the gateway's engine client is not set up")
    transport: httpx.AsyncBaseTransport | None = getattr(client, "engine_transport", None)
    for attempt in (1, 2):
        trace = AttemptTrace()
        try:
            if transport is None:  # a client without the engine transport (tests may swap it)
                request = client.build_request(
                    "POST",
                    backend.url + path,
                    content=content,
                    headers={**backend.upstream_headers(), **JSON_HEADERS},
                    extensions={"trace": trace},
                )
                return await client.send(request, stream=stream)
            return await direct_send(client, transport, backend, path, content, trace, stream)
        except httpx.HTTPError as exc:
            if attempt == 1 and trace.safe_to_retry(exc):
                log.info(
                    "pooled upstream connection was closed before the request; retrying once",
                    extra={"variant": backend.variant, "error": type(exc).__name__},
                )
                continue
            raise transport_failure(gateway, backend, exc) from None
    raise AssertionError("unreachable: the second attempt returns or raises")


JSON_HEADERS = {"content-type": "application/json"}


async def direct_send(
    client: httpx.AsyncClient,
    transport: httpx.AsyncBaseTransport,
    backend: Backend,
    path: str,
    content: bytes,
    trace: AttemptTrace,
    stream: bool,
) -> httpx.Response:
    """`client.send` without its layers the gateway never uses (auth flows, redirects, cookies, event
    hooks), straight to the engine transport: the same request, headers, timeouts and trace. To the
    hand-written transport the request goes as the bytes of its head (no `httpx.Request` is built: the
    same head `handle_async_request` would write for it, and the response has no `request`)."""
    headers = [
        (b"host", backend_host(backend)),
        (b"accept", b"*/*"),
        (b"content-type", b"application/json"),
        (b"content-length", str(len(content)).encode()),
    ]
    headers += [(name.lower().encode(), value.encode()) for name, value in backend.upstream_headers().items()]
    url = backend_url(backend, path)
    if isinstance(transport, EngineTransport):
        head = b"\r\n".join(
            [b"POST " + url.raw_path + b" HTTP/1.1", *[name + b": " + value for name, value in headers], b"", b""]
        )
        response = await transport.send_raw(url, "POST", head, content, client.timeout.as_dict(), trace)
    else:
        request = httpx.Request(
            "POST",
            url,
            headers=headers,
            content=content,
            extensions={"trace": trace, "timeout": client.timeout.as_dict()},
        )
        response = await transport.handle_async_request(request)
        response.request = request
    if not stream:
        try:
            await read_body(response)
        except BaseException:
            await response.aclose()
            raise
    return response


_URLS: dict[str, httpx.URL] = {}


def backend_url(backend: Backend, path: str) -> httpx.URL:
    """Parsed once per engine URL and path (a gateway has a handful)."""
    text = backend.url + path
    url = _URLS.get(text)
    if url is None:
        url = httpx.URL(text)
        if len(_URLS) < 1024:
            _URLS[text] = url
    return url


def backend_host(backend: Backend) -> bytes:
    url = backend_url(backend, "")
    default = {"http": 80, "https": 443}.get(url.scheme)
    return url.raw_host if url.port in (None, default) else url.raw_host + b":" + str(url.port).encode()


def backend_unavailable(backend: Backend) -> OpenAIError:
    # The reason (a connection error with the engine's URL, an engine log line) stays in the log and
    # in /ready's details for key holders; the client only learns that it should retry.
    return OpenAIError(
        503,
        f"the engine of variant {backend.variant!r} is not available; retry later",
        code="engine_unavailable",
        headers={"Retry-After": RETRY_AFTER_DOWN_S},
    )


def transport_failure(gateway: GatewayState, backend: Backend, exc: httpx.HTTPError) -> OpenAIError:
    variant = backend.variant
    log.warning("upstream transport failure", extra={"variant": variant, "error": f"{type(exc).__name__}: {exc}"})
    if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout)):
        supervisor = gateway.supervisor
        if supervisor is None:  # set with the client by the app's lifespan (app/main.py)
            raise RuntimeError("the gateway's engine supervisor is not set up")
        supervisor.mark_down(backend, f"cannot connect: {exc}")
        return backend_unavailable(backend)
    if isinstance(exc, httpx.TimeoutException):
        return OpenAIError(
            504, f"the engine of variant {variant!r} did not answer in time; retry", code="upstream_timeout"
        )
    return OpenAIError(502, f"the engine of variant {variant!r} failed mid-request; retry", code="upstream_failed")


def engine_failed(variant: str, status: int, message: str) -> OpenAIError:
    """A 5xx from the engine (or its in-stream equivalent): generic to the client, details logged."""
    log.warning("engine error", extra={"variant": variant, "upstream_status": status, "error": message[:2000]})
    return OpenAIError(502, f"the engine of variant {variant!r} failed; retry", code="upstream_error")


CONTEXT_LENGTH_MARK = "maximum context length"  # in every vLLM context-length refusal (prompt, or prompt + max_tokens)


def client_error(status: int, error: dict, path: str = "") -> OpenAIError:
    """An engine 4xx: about the request itself (too long a prompt, a bad value), so its message helps.

    vLLM's context-length refusal gets OpenAI's shape: 400, `code: context_length_exceeded`, `param`
    `messages` (chat) or `prompt` (completions), so clients that handle OpenAI's error handle it too."""
    param, code = error.get("param"), error.get("code")
    message = str(error.get("message") or f"HTTP {status}")
    if status == 400 and CONTEXT_LENGTH_MARK in message:
        return OpenAIError(
            400, message, param="prompt" if path == "/v1/completions" else "messages", code="context_length_exceeded"
        )
    return OpenAIError(
        status, message, param=param if isinstance(param, str) else None, code=str(code) if code is not None else None
    )


def upstream_error(variant: str, status: int, content: bytes, path: str = "") -> OpenAIError:
    """An error answer from the engine: its own message for 4xx, a generic 502 for anything else."""
    error: dict = {}
    try:
        parsed = json.loads(content)
        error = parsed.get("error") if isinstance(parsed.get("error"), dict) else parsed
    except (ValueError, AttributeError):
        pass
    if 400 <= status < 500:
        return client_error(status, error or {"message": content[:300].decode(errors="replace")}, path)
    return engine_failed(variant, status, str(error.get("message") or content[:2000].decode(errors="replace")))


def stream_error(variant: str, chunk: dict) -> OpenAIError | None:
    """The error a stream chunk carries (`{"error": {...}}`, or vLLM's older `{"object": "error", ...}`)."""
    error = chunk.get("error") if isinstance(chunk.get("error"), dict) else None
    if error is None and chunk.get("object") == "error":
        error = chunk
    if error is None:
        return None
    code = error.get("code")
    if isinstance(code, int) and 400 <= code < 500:
        return client_error(code, error)
    return engine_failed(variant, code if isinstance(code, int) else 0, str(error.get("message")))
