"""GET /health (the gateway process is alive) and GET /ready (every variant's engine is up).

/ready is public by default (probes), so without a key it says only booleans:
each variant's state and last error (which may quote the engine log, paths and
command lines) go only to trusted callers: a valid key, or loopback without keys.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from app.api.deps import Gateway, HealthKey

router = APIRouter(dependencies=[HealthKey], tags=["operations"])


@router.get("/health")
async def health() -> dict:
    return {"status": "ok"}


@router.get("/ready")
async def ready(request: Request, gateway: Gateway) -> JSONResponse:
    is_ready = all(backend.up for backend in gateway.backends.values())
    body: dict[str, object] = {"ready": is_ready, "auth_required": gateway.keys.required}
    if getattr(request.state, "trusted", False):
        body["variants"] = [backend.describe() for backend in gateway.backends.values()]
    return JSONResponse(body, status_code=200 if is_ready else 503)
