"""The gateway's upstream transport, swappable for measurement: the hand-written one, httpcore, or aiohttp.

The gateway talks to its engines through an `httpx.AsyncClient` whose
`engine_transport` receives each proxied request (app/serving/upstream.py).
This module builds the same client over two other transports, so the one
choice (app/serving/client.py's `EngineTransport`) can be measured against
what the rest of the field uses, behind the same serving code:

- `engine`: app/serving/client.py as shipped;
- `httpcore`: httpx's own `AsyncHTTPTransport` (httpcore's pool);
- `aiohttp`: an `aiohttp.ClientSession` (what LiteLLM and the production-stack
  router use) behind a thin httpx transport adapter that maps its errors and
  trace events to the ones the gateway reads.

Two entry points, neither used by the gateway itself:

    python -m bench.upstream_transports --transport aiohttp serve --config variants.yaml --port 8080
    MOEPRUNE_BENCH_UPSTREAM=aiohttp pytest -p bench.upstream_transports tests/app/serving/test_engine_transport.py

The first runs `moeprune` with the chosen transport (under cProfile, stats written
on exit, when $MOEPRUNE_BENCH_CPROFILE names a file); the second (a pytest
plugin) runs the transport contract tests against it.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import sys

import httpx

from app.config.settings import Settings

TRANSPORTS = ("engine", "httpcore", "aiohttp")
ENV = "MOEPRUNE_BENCH_UPSTREAM"
PROFILE_ENV = "MOEPRUNE_BENCH_CPROFILE"  # a file: the gateway runs under cProfile and writes its stats there


def _timeout(settings: Settings) -> httpx.Timeout:
    return httpx.Timeout(
        connect=settings.upstream_connect_timeout_s,
        read=settings.upstream_timeout_s,
        write=settings.upstream_write_timeout_s,
        pool=settings.upstream_pool_timeout_s,
    )


def httpcore_client(settings: Settings, tls: dict[tuple, ssl.SSLContext] | None = None) -> httpx.AsyncClient:
    limits = httpx.Limits(
        max_connections=None, max_keepalive_connections=256, keepalive_expiry=settings.upstream_keepalive_s
    )
    transport = httpx.AsyncHTTPTransport(limits=limits)
    client = httpx.AsyncClient(transport=transport, timeout=_timeout(settings))
    client.engine_transport = transport
    return client


def aiohttp_client(settings: Settings, tls: dict[tuple, ssl.SSLContext] | None = None) -> httpx.AsyncClient:
    transport = AiohttpTransport(settings.upstream_keepalive_s)
    client = httpx.AsyncClient(transport=transport, timeout=_timeout(settings))
    client.engine_transport = transport
    return client


def engine_client(settings: Settings, tls: dict[tuple, ssl.SSLContext] | None = None) -> httpx.AsyncClient:
    from app.serving.client import build_upstream_client as shipped

    return shipped(settings, tls)


BUILDERS = {"engine": engine_client, "httpcore": httpcore_client, "aiohttp": aiohttp_client}


class _AiohttpBody(httpx.AsyncByteStream):
    """aiohttp's response body as httpx reads it; released to the pool only when read to its end."""

    def __init__(self, response) -> None:
        self._response = response

    async def __aiter__(self):
        try:
            async for piece in self._response.content.iter_any():
                yield piece
        except BaseException as exc:
            self._response.close()
            mapped = _map_error(exc)
            if mapped is None:
                raise
            raise mapped from None
        self._response.release()

    async def aclose(self) -> None:
        if self._response.content.at_eof():
            self._response.release()
        else:
            self._response.close()  # a body not read to its end: the connection goes (the engine aborts)


def _map_error(exc: BaseException) -> httpx.HTTPError | None:
    import aiohttp

    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return httpx.ConnectTimeout(str(exc))
    if isinstance(exc, (aiohttp.ServerTimeoutError, asyncio.TimeoutError)):
        return httpx.ReadTimeout(str(exc) or "timed out reading the engine's answer")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return httpx.ConnectError(str(exc))
    if isinstance(exc, (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError, aiohttp.ClientResponseError)):
        return httpx.RemoteProtocolError(str(exc))
    if isinstance(exc, (aiohttp.ClientOSError, ConnectionError)):
        return httpx.ReadError(str(exc))
    if isinstance(exc, aiohttp.ClientError):
        return httpx.RemoteProtocolError(str(exc))
    return None


class AiohttpTransport(httpx.AsyncBaseTransport):
    """httpx requests over one `aiohttp.ClientSession` (created on first use, in the running loop)."""

    def __init__(self, keepalive_expiry: float) -> None:
        self._keepalive_expiry = keepalive_expiry
        self._session = None

    def _open(self):
        import aiohttp

        async def connecting(session, context, params) -> None:
            trace = context.trace_request_ctx
            if trace is not None:
                await trace("connection.connect_tcp.started", {})

        tracing = aiohttp.TraceConfig()
        tracing.on_connection_create_start.append(connecting)
        connector = aiohttp.TCPConnector(
            limit=0, limit_per_host=0, keepalive_timeout=self._keepalive_expiry, ttl_dns_cache=None
        )
        return aiohttp.ClientSession(
            connector=connector,
            auto_decompress=False,
            trace_configs=[tracing],
            skip_auto_headers=("User-Agent", "Accept-Encoding", "Content-Type"),
            cookie_jar=aiohttp.DummyCookieJar(),
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        import aiohttp

        if request.url.scheme not in ("http", "https"):
            raise httpx.UnsupportedProtocol(f"the aiohttp transport speaks http and https, not {request.url.scheme!r}")
        if self._session is None:
            self._session = self._open()
        timeouts = request.extensions.get("timeout") or {}
        trace = request.extensions.get("trace")
        body = b"".join([part async for part in request.stream])
        headers = [
            (name.decode("latin-1"), value.decode("latin-1"))
            for name, value in request.headers.raw
            if name.lower() not in (b"host", b"transfer-encoding")
        ]
        timeout = aiohttp.ClientTimeout(total=None, connect=timeouts.get("connect"), sock_read=timeouts.get("read"))
        try:
            response = await self._session.request(
                request.method,
                str(request.url),
                data=body or None,
                headers=headers,
                allow_redirects=False,
                timeout=timeout,
                trace_request_ctx=trace,
                compress=None,
                chunked=None,
            )
        except BaseException as exc:
            mapped = _map_error(exc)
            if mapped is None:
                raise
            raise mapped from None
        if trace is not None:
            await trace("http11.receive_response_headers.complete", {})
        return httpx.Response(
            response.status,
            headers=list(response.raw_headers),
            stream=_AiohttpBody(response),
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": (response.reason or "").encode("latin-1")},
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def install(name: str) -> None:
    """Make every `build_upstream_client` the gateway and the tests call build `name`'s client."""
    if name not in BUILDERS:
        raise SystemExit(f"unknown upstream transport {name!r}; choose one of {', '.join(TRANSPORTS)}")
    if name == "engine":
        return
    import app.main
    import app.serving.client

    app.serving.client.build_upstream_client = BUILDERS[name]
    app.main.build_upstream_client = BUILDERS[name]


# As a pytest plugin (`-p bench.upstream_transports`): the transport named by $MOEPRUNE_BENCH_UPSTREAM.
if "pytest" in sys.modules and os.environ.get(ENV):
    install(os.environ[ENV])


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) < 2 or argv[0] != "--transport":
        raise SystemExit(
            f"usage: python -m bench.upstream_transports --transport {{{','.join(TRANSPORTS)}}} <moeprune arguments>"
        )
    install(argv[1])
    from moeprune.cli import main as moeprune

    profile = os.environ.get(PROFILE_ENV)
    if not profile:
        return moeprune(argv[2:])
    import cProfile
    import signal

    # uvicorn re-raises the SIGTERM it stopped on after its shutdown; with the default action that would end
    # the process before the stats are written, so the handler it restores and re-raises to is a no-op.
    signal.signal(signal.SIGTERM, lambda signum, frame: None)
    profiler = cProfile.Profile()
    try:
        return profiler.runcall(moeprune, argv[2:])
    finally:
        profiler.dump_stats(profile)


if __name__ == "__main__":
    sys.exit(main())
