"""POST /v1/chat/completions (streaming too)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from app.api.deps import ApiKey
from app.api.fast_routes import CompletionRoute
from app.api.schemas import ChatCompletionRequest
from app.serving.handle import serve
from app.serving.tools import require_tools

PATH = "/v1/chat/completions"
router = APIRouter(dependencies=[ApiKey], tags=["openai"])


@router.post(PATH)
async def chat_completions(body: ChatCompletionRequest, request: Request):
    """OpenAI chat completions, plus `reliability` in the body and `x-moe-*` headers."""
    # The gateway state straight from the app (not a Depends: each dependency costs a resolution per request).
    gateway = request.app.state.gateway
    payload = body.model_dump(exclude_unset=True, by_alias=True)
    require_tools(gateway.config, payload)  # before routing: never forwarded, no arm drawn
    return await serve(request, gateway, payload, chat=True)


# What the gateway serves at PATH (app/api/fast_routes.py); the route above documents it and serves the rest.
route = CompletionRoute(ChatCompletionRequest, chat_completions)
