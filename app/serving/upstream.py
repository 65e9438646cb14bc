"""Map what can go wrong between the gateway and an engine to the gateway's documented statuses.

Connection refused: the engine is down -> 503 (and the backend is marked down
until its health check passes again). Connection dropped mid-request: 502.
No answer in time: 504. Engine 4xx: passed through in OpenAI shape. Engine 5xx: 502.
"""

from __future__ import annotations

import json

import httpx

from app.api.errors import OpenAIError
from app.engines.backends import Backend
from app.core.state import GatewayState

RETRY_AFTER_DOWN_S = "5"


def backend_unavailable(backend: Backend) -> OpenAIError:
    reason = backend.last_error.splitlines()[0] if backend.last_error else "starting"
    return OpenAIError(503, f"the engine of variant {backend.variant!r} is not available ({reason}); retry later",
                       code="engine_unavailable", headers={"Retry-After": RETRY_AFTER_DOWN_S})


def transport_failure(gateway: GatewayState, backend: Backend, exc: httpx.HTTPError) -> OpenAIError:
    variant = backend.variant
    if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout)):
        gateway.supervisor.mark_down(backend, f"connection refused: {exc}")
        return backend_unavailable(backend)
    if isinstance(exc, httpx.TimeoutException):
        seconds = gateway.settings.upstream_timeout_s
        return OpenAIError(504, f"the engine of variant {variant!r} did not answer within {seconds:g}s",
                           code="upstream_timeout")
    return OpenAIError(502, f"the engine of variant {variant!r} failed mid-request ({type(exc).__name__}); "
                            "retry", code="upstream_failed")


def upstream_error(variant: str, status: int, content: bytes) -> OpenAIError:
    """An error answer from the engine: its own message for 4xx, 502 for 5xx."""
    message, param, code = None, None, None
    try:
        error = json.loads(content).get("error") or {}
        message, param, code = error.get("message"), error.get("param"), error.get("code")
    except (ValueError, AttributeError):
        pass
    message = message or content[:300].decode(errors="replace") or f"HTTP {status}"
    if status >= 500 or status < 400:
        return OpenAIError(502, f"the engine of variant {variant!r} failed: {message}", code="upstream_error")
    return OpenAIError(status, message, param=param if isinstance(param, str) else None,
                       code=str(code) if code is not None else None)
