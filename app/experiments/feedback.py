"""The body of POST /v1/feedback, validated (an id, one outcome, optional tags; no free text), and its answer.

Tags are short lowercase tokens (at most MAX_TAGS of [a-z0-9_-], 32 characters
each) so no sentence, name or note can be smuggled in; they are stored on the
feedback's row (deleted with it at the end of the retention window) and never
logged or aggregated into metrics.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from app.errors import OpenAIError
from app.reliability.live import Outcome

MAX_TAGS = 8
Tag = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$")]


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)

    id: str = Field(
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z0-9._:-]+$",
        description="the `id` of a completion the gateway returned",
    )
    score: float | None = Field(None, ge=0, le=1, description="outcome in [0, 1], higher is better")
    label: Literal["good", "bad"] | None = Field(None, description="good counts as 1, bad as 0")
    tags: list[Tag] = Field(default_factory=list, max_length=MAX_TAGS)

    @model_validator(mode="after")
    def one_outcome(self) -> FeedbackRequest:
        if (self.score is None) == (self.label is None):
            raise ValueError("give exactly one of `score` (a number in [0, 1]) or `label` (good or bad)")
        return self

    @property
    def value(self) -> float:
        if self.label is not None:
            return 1.0 if self.label == "good" else 0.0
        assert self.score is not None  # one_outcome: exactly one of score / label
        return float(self.score)

    @property
    def is_wrong(self) -> bool:
        """How the live re-check counts it: bad, or a score below one half."""
        return self.value < 0.5


def parse_feedback(data: object) -> FeedbackRequest:
    """Validate a decoded body; every problem is a 400 naming the field (never echoing its value)."""
    if isinstance(data, dict) and isinstance(data.get("score"), int) and not isinstance(data.get("score"), bool):
        data = {**data, "score": float(data["score"])}  # 0 and 1 are scores too (strict mode refuses ints)
    try:
        return FeedbackRequest.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors()[:5]:
            where = ".".join(str(part) for part in error.get("loc", ())) or "body"
            message = (
                "is not a field of feedback (id, score, label, tags)"
                if error["type"] == "extra_forbidden"
                else error["msg"]
            )
            problems.append(f"{where}: {message}")
        first = exc.errors()[0].get("loc", ()) if exc.errors() else ()
        raise OpenAIError(
            400, "; ".join(problems), param=".".join(str(p) for p in first) or None, code="invalid_feedback"
        ) from None


def not_found(completion_id: str) -> OpenAIError:
    # Another key's completion is reported as unknown: ids are not a way to probe other clients.
    return OpenAIError(
        404,
        f"no completion with id {completion_id!r} for this key (never served by this gateway, "
        f"served to another API key, or older than the retention window); send the `id` of a "
        f"completion this key received",
        param="id",
        code="completion_not_found",
    )


def live_response(completion_id: str, live: Outcome | None, experiment: dict | None) -> dict:
    """The answer to a feedback: the experiment's fields where it was an experiment's completion, plus
    the live re-check's (`domain`, `label_status`) where the gateway recorded the served answer."""
    body = dict(experiment) if experiment is not None else {"object": "feedback", "id": completion_id}
    if live is not None:
        body.setdefault("variant", live.variant)
        body.setdefault("recorded", live.status != "same")
        body.setdefault("duplicate", live.status == "same")
        body.update(domain=live.domain, label_status=live.status)
    return body
