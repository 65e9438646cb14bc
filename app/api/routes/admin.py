"""POST /v1/admin/reload: re-read variants.yaml's experiments without a restart (as SIGHUP does).

Behind the API key like every /v1 path; it only re-reads the file the operator
configured, so a client can trigger a reload but never choose what is loaded.
"""

from __future__ import annotations

from fastapi import APIRouter

from app.api.deps import ApiKey, Gateway
from app.errors import OpenAIError
from app.experiments.reload import reload_config
from moeprune.errors import UserError

router = APIRouter(dependencies=[ApiKey], tags=["operations"])


@router.post("/v1/admin/reload")
async def reload(gateway: Gateway) -> dict:
    try:
        return await reload_config(gateway)
    except UserError as exc:
        raise OpenAIError(400, str(exc), code="reload_refused") from None
