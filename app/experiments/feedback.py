"""The body of POST /v1/feedback, validated: an id, one outcome (score or label), optional tags; no free text.

Tags are short lowercase tokens (at most MAX_TAGS of [a-z0-9_-], 32 characters
each) so no sentence, name or note can be smuggled in; they are stored on the
feedback's row (deleted with it at the end of the retention window) and never
logged or aggregated into metrics.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from app.api.errors import OpenAIError

MAX_TAGS = 8
Tag = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$")]


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)

    id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:-]+$",
                    description="the `id` of a completion the gateway returned")
    score: float | None = Field(None, ge=0, le=1, description="outcome in [0, 1], higher is better")
    label: Literal["good", "bad"] | None = Field(None, description="good counts as 1, bad as 0")
    tags: list[Tag] = Field(default_factory=list, max_length=MAX_TAGS)

    @model_validator(mode="after")
    def one_outcome(self) -> "FeedbackRequest":
        if (self.score is None) == (self.label is None):
            raise ValueError("give exactly one of `score` (a number in [0, 1]) or `label` (good or bad)")
        return self

    @property
    def value(self) -> float:
        if self.label is not None:
            return 1.0 if self.label == "good" else 0.0
        return float(self.score)


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
            message = "is not a field of feedback (id, score, label, tags)" if error["type"] == "extra_forbidden" \
                else error["msg"]
            problems.append(f"{where}: {message}")
        first = exc.errors()[0].get("loc", ()) if exc.errors() else ()
        raise OpenAIError(400, "; ".join(problems), param=".".join(str(p) for p in first) or None,
                          code="invalid_feedback") from None
