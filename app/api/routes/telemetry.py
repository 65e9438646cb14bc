"""GET /v1/telemetry/routing?variant=V[&label=L]: the routing counts as a `--scores-in` statistics file.

Behind the API key like every /v1 route. The answer holds integers only (per
layer, per expert), the same file `moeprune traffic export` writes.
"""

from __future__ import annotations

from fastapi import APIRouter

from app.api.deps import ApiKey, Gateway
from app.errors import OpenAIError
from moeprune.errors import UserError

router = APIRouter(dependencies=[ApiKey], tags=["moeprune"])


@router.get("/v1/telemetry/routing")
async def routing_statistics(gateway: Gateway, variant: str, label: str | None = None) -> dict:
    telemetry = gateway.telemetry
    if telemetry is None:
        raise OpenAIError(
            404,
            "no variant has routing telemetry on (telemetry.routed_experts in variants.yaml)",
            param="variant",
            code="telemetry_off",
        )
    try:
        return telemetry.export(variant, label)
    except UserError as exc:
        raise OpenAIError(404, str(exc), param="variant", code="telemetry_off") from None
