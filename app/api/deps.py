"""FastAPI dependencies: the gateway state, and a fail-closed check that the API-key middleware ran.

The key itself is checked by `ApiKeyAuth` (app/api/auth.py) before the body is
read; these dependencies only refuse a request that middleware never saw (an
app assembled without it), so a wiring mistake cannot leave a route open.

They are `async def` on purpose: FastAPI runs plain `def` dependencies in a
thread pool, and that hand-off was most of the gateway's per-request CPU.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from app.errors import OpenAIError
from app.state import GatewayState


async def get_gateway(request: Request) -> GatewayState:
    return request.app.state.gateway


Gateway = Annotated[GatewayState, Depends(get_gateway)]


async def require_checked_request(request: Request) -> None:
    if "key_id" not in request.scope.get("state", {}):
        raise OpenAIError(
            401,
            "API key check did not run; refusing the request",
            code="invalid_api_key",
            headers={"WWW-Authenticate": "Bearer"},
        )


# One check for every router; which paths are public is the middleware's decision (its settings).
ApiKey = Depends(require_checked_request)
MetricsKey = ApiKey
HealthKey = ApiKey
