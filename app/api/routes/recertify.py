"""POST /v1/admin/recertify: clear live fallbacks whose fresh feedback supports the certificate again.

Body (all optional): `{"variant": "gate-50", "domain": "cross_domain", "force": false}`; no body
re-checks every pair in fallback. GET /v1/admin/live shows every pair's live state. Behind the
API key like /v1/admin/reload. `moeprune recertify` calls it (app/commands/recertify.py).
"""

from __future__ import annotations

import json

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from app.api.deps import ApiKey, Gateway
from app.errors import OpenAIError

router = APIRouter(dependencies=[ApiKey], tags=["operations"])


class RecertifyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    variant: str | None = Field(None, max_length=128, description="only this variant (default: every one)")
    domain: str | None = Field(None, max_length=64, description="only this domain (default: every one)")
    force: bool = Field(False, description="clear even without enough fresh labels (after loading a new card)")


# Parsed by hand (an empty body is allowed, every problem a 400); the schema is still published.
BODY_SCHEMA = {
    "requestBody": {
        "required": False,
        "content": {"application/json": {"schema": RecertifyRequest.model_json_schema()}},
    }
}


@router.post("/v1/admin/recertify", openapi_extra=BODY_SCHEMA)
async def recertify(request: Request, gateway: Gateway) -> dict:
    raw = await request.body()
    try:
        body = RecertifyRequest.model_validate(json.loads(raw) if raw.strip() else {})
    except (ValueError, UnicodeDecodeError, ValidationError):
        raise OpenAIError(
            400,
            "expected a JSON object with optional `variant` (string), `domain` (string) and `force` (true/false)",
            code="invalid_recertify",
        ) from None
    live = gateway.live
    known = [(v, d) for v, d in live.pairs if body.variant in (None, v) and body.domain in (None, d)]
    if (body.variant is not None or body.domain is not None) and not known:
        raise OpenAIError(
            404,
            f"no live state for variant {body.variant!r} and domain {body.domain!r}: the gateway "
            f"has served no such pair; GET /v1/admin/live lists them",
            code="pair_not_found",
        )
    results = live.recertify(body.variant, body.domain, force=body.force)
    return {
        "object": "recertification",
        "pairs": results,
        "fallbacks": [pair for pair in live.snapshot() if pair["fallback"]],
    }


@router.get("/v1/admin/live")
async def live_state(gateway: Gateway) -> dict:
    return {"object": "list", "data": gateway.live.snapshot()}
