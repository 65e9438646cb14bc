"""GET /v1/models: every variant and experiment a request may name as `model`."""

from __future__ import annotations

from fastapi import APIRouter

from app.api.deps import ApiKey, Gateway

router = APIRouter(dependencies=[ApiKey], tags=["openai"])


@router.get("/v1/models")
async def list_models(gateway: Gateway) -> dict:
    data = []
    for name, variant in gateway.config.variants.items():
        backend = gateway.backends[name]
        certificates = gateway.certification[name].certificates
        data.append(
            {
                "id": name,
                "object": "model",
                "created": 0,
                "owned_by": "moeprune",
                "moeprune": {
                    "kind": "variant",
                    "base": variant.base,
                    "up": backend.up,
                    "managed": backend.managed,
                    "base_check": variant.base_check_on,
                    "cascade": variant.cascade,
                    # null: no card reliability section, every answer is flagged `uncertified`
                    "certificates": certificates.listing() if certificates is not None else None,
                },
            }
        )
    for name, experiment in gateway.config.experiments.items():
        data.append(
            {
                "id": name,
                "object": "model",
                "created": 0,
                "owned_by": "moeprune",
                "moeprune": {"kind": "experiment", "arms": experiment.arms, "sticky": experiment.sticky},
            }
        )
    return {"object": "list", "data": data}
