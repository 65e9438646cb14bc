"""POST /v1/feedback: the app says how good an experiment's answer was (score in [0, 1], or good/bad).

`{"id": "<the completion's id>", "label": "good"}` or `{"id": ..., "score": 0.8, "tags": ["triage"]}`.
Authenticated like /v1/*; only the key that made the completion may rate it;
the first feedback per (id, key) counts and repeats answer `duplicate: true`.
Unknown, expired (past MOEPRUNE_EXPERIMENT_RETENTION_S) or another key's id:
404; a malformed body: 400. Nothing of the body but the numbers and tags is
stored, and nothing of it is logged.
"""

from __future__ import annotations

import json

from fastapi import APIRouter, Request

from app.api.deps import ApiKey, Gateway
from app.api.errors import OpenAIError
from app.experiments.feedback import FeedbackRequest, parse_feedback

router = APIRouter(dependencies=[ApiKey], tags=["moeprune"])


# The body is parsed by hand (every problem a 400, not FastAPI's 422); the schema is still published.
BODY_SCHEMA = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": FeedbackRequest.model_json_schema()}}}}


@router.post("/v1/feedback", openapi_extra=BODY_SCHEMA)
async def feedback(request: Request, gateway: Gateway) -> dict:
    try:
        data = json.loads(await request.body())
    except (ValueError, UnicodeDecodeError):
        raise OpenAIError(400, "the request body is not valid JSON", code="invalid_json") from None
    body = parse_feedback(data)
    key_id = getattr(request.state, "key_id", "anonymous")
    return await gateway.experiments.feedback(body.id, key_id, body.value, body.label, body.tags)
