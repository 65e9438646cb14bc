"""POST /v1/feedback: the app says how good an answer was (score in [0, 1], or good/bad).

`{"id": "<the completion's id>", "label": "good"}` or `{"id": ..., "score": 0.8, "tags": ["triage"]}`.
Authenticated like /v1/*; only the key that received the completion may rate it.

Two consumers join the id (docs/gateway.md, "Live re-certification" and "Experiment statistics"):
- every served completion (app/reliability/live.py): bad or a score below 0.5 counts as wrong
  for the live re-check of its certificate; the latest label per id wins (`label_status`
  `new`, `same` or `revised`);
- an experiment's completion (app/experiments/service.py) also counts towards its arm; there the
  first feedback per (id, key) counts and repeats answer `duplicate: true`.
An id neither knows (never served, another key's, past retention): 404 in OpenAI's shape; a
malformed body: 400. Nothing of the body but the numbers and tags is stored, and nothing of it is logged.
"""

from __future__ import annotations

import json

from fastapi import APIRouter, Request

from app.api.deps import ApiKey, Gateway
from app.errors import OpenAIError
from app.experiments.feedback import FeedbackRequest, live_response, not_found, parse_feedback
from app.reliability.live import UnknownCompletion

router = APIRouter(dependencies=[ApiKey], tags=["moeprune"])


# The body is parsed by hand (every problem a 400, not FastAPI's 422); the schema is still published.
BODY_SCHEMA = {
    "requestBody": {"required": True, "content": {"application/json": {"schema": FeedbackRequest.model_json_schema()}}}
}


@router.post("/v1/feedback", openapi_extra=BODY_SCHEMA)
async def feedback(request: Request, gateway: Gateway) -> dict:
    try:
        data = json.loads(await request.body())
    except (ValueError, UnicodeDecodeError):
        raise OpenAIError(400, "the request body is not valid JSON", code="invalid_json") from None
    body = parse_feedback(data)
    key_id = getattr(request.state, "key_id", "anonymous")
    try:
        live = gateway.live.record_outcome(body.id, key_id, wrong=body.is_wrong)
    except UnknownCompletion:
        live = None
    experiment = None
    if gateway.experiments.active:
        try:
            experiment = await gateway.experiments.feedback(body.id, key_id, body.value, body.label, body.tags)
        except OpenAIError as exc:
            if exc.status != 404:  # a store outage is still a 503; an id nobody knows gets the one 404 below
                raise
    if live is None and experiment is None:
        raise not_found(body.id)
    return live_response(body.id, live, experiment)
