"""GET /health (the gateway process is alive) and GET /ready (every variant's engine is up)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from app.api.deps import Gateway, HealthKey

router = APIRouter(dependencies=[HealthKey], tags=["operations"])


@router.get("/health")
async def health() -> dict:
    return {"status": "ok"}


@router.get("/ready")
async def ready(gateway: Gateway) -> JSONResponse:
    backends = [backend.describe() for backend in gateway.backends.values()]
    ready = all(backend["up"] for backend in backends)
    return JSONResponse({"ready": ready, "variants": backends}, status_code=200 if ready else 503)
