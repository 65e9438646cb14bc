"""FastAPI dependencies: the gateway state and API-key checks, as `Annotated` aliases for routes.

They are `async def` on purpose: FastAPI runs plain `def` dependencies in a
thread pool, and that hand-off was most of the gateway's per-request CPU.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request

from app.api.errors import OpenAIError
from app.core.state import GatewayState


async def get_gateway(request: Request) -> GatewayState:
    return request.app.state.gateway


Gateway = Annotated[GatewayState, Depends(get_gateway)]


def _key_is_valid(request: Request, keys: frozenset[str]) -> bool:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        return False
    # Constant-time comparison against every key, so timing does not reveal a prefix.
    return any(hmac.compare_digest(token.strip().encode(), key.encode()) for key in keys)


def check_key(request: Request, gateway: GatewayState, required: bool) -> None:
    if not required or not gateway.api_keys:
        return
    if not _key_is_valid(request, gateway.api_keys):
        missing = "authorization" not in request.headers
        message = ("missing API key: send `Authorization: Bearer <key>`" if missing
                   else "invalid API key")
        raise OpenAIError(401, message, code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})


async def require_api_key(request: Request, gateway: Gateway) -> None:
    check_key(request, gateway, required=True)


async def require_key_for_metrics(request: Request, gateway: Gateway) -> None:
    check_key(request, gateway, required=gateway.settings.metrics_require_key)


async def require_key_for_health(request: Request, gateway: Gateway) -> None:
    check_key(request, gateway, required=gateway.settings.health_require_key)


ApiKey = Depends(require_api_key)
MetricsKey = Depends(require_key_for_metrics)
HealthKey = Depends(require_key_for_health)
