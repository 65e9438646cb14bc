"""The one HTTP client the gateway talks to its engines with (split timeouts, short keep-alive)."""

from __future__ import annotations

import httpx

from app.core.config import Settings


def build_upstream_client(settings: Settings) -> httpx.AsyncClient:
    """Keep-alive shorter than the engine's own (uvicorn: 5 s), so the gateway always closes an idle
    connection before the engine does and a pooled connection never races the server's close."""
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=256,
                          keepalive_expiry=settings.upstream_keepalive_s)
    timeout = httpx.Timeout(connect=settings.upstream_connect_timeout_s, read=settings.upstream_timeout_s,
                            write=settings.upstream_write_timeout_s, pool=settings.upstream_pool_timeout_s)
    return httpx.AsyncClient(limits=limits, timeout=timeout)
