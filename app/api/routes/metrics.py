"""GET /metrics: the gateway's Prometheus metrics (text exposition format)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from app.api.deps import Gateway, MetricsKey

router = APIRouter(dependencies=[MetricsKey], tags=["operations"])


@router.get("/metrics")
async def metrics(gateway: Gateway) -> Response:
    await gateway.metrics.refresh(gateway.backends, gateway.gpu)
    return Response(gateway.metrics.render(), media_type=CONTENT_TYPE_LATEST)
