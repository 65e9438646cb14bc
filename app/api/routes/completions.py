"""POST /v1/completions (streaming too)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from app.api.deps import ApiKey, Gateway
from app.api.schemas import CompletionRequest
from app.serving.handle import serve

router = APIRouter(dependencies=[ApiKey], tags=["openai"])


@router.post("/v1/completions")
async def completions(body: CompletionRequest, request: Request, gateway: Gateway):
    """OpenAI text completions, plus `reliability` in the body and `x-moe-*` headers."""
    return await serve(request, gateway, body.model_dump(exclude_unset=True, by_alias=True), chat=False)
