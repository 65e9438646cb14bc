"""POST /v1/completions (streaming too)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from app.api.deps import ApiKey
from app.api.fast_routes import CompletionRoute
from app.api.schemas import CompletionRequest
from app.serving.handle import serve

PATH = "/v1/completions"
router = APIRouter(dependencies=[ApiKey], tags=["openai"])


@router.post(PATH)
async def completions(body: CompletionRequest, request: Request):
    """OpenAI text completions, plus `reliability` in the body and `x-moe-*` headers."""
    # The gateway state straight from the app (not a Depends: each dependency costs a resolution per request).
    gateway = request.app.state.gateway
    return await serve(request, gateway, body.model_dump(exclude_unset=True, by_alias=True), chat=False)


# What the gateway serves at PATH (app/api/fast_routes.py); the route above documents it and serves the rest.
route = CompletionRoute(CompletionRequest, completions)
