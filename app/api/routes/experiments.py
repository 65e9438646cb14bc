"""GET /v1/experiments/{name}: per-arm counts, rates and latency with intervals, outcomes, verdicts, memory saved.

The numbers come from the experiment database (app/experiments/), so they survive
restarts and are the same on every replica sharing it.
"""

from __future__ import annotations

from fastapi import APIRouter

from app.api.deps import ApiKey, Gateway
from app.errors import OpenAIError

router = APIRouter(dependencies=[ApiKey], tags=["moeprune"])


@router.get("/v1/experiments/{name}")
async def experiment_stats(name: str, gateway: Gateway) -> dict:
    if name not in gateway.config.experiments:
        known = ", ".join(sorted(gateway.config.experiments)) or "(none configured)"
        raise OpenAIError(
            404, f"unknown experiment {name!r}; known: {known}", param="name", code="experiment_not_found"
        )
    return await gateway.experiments.report(name, gateway.footprints)
