"""GET /v1/experiments/{name}: per-arm requests, error and flag rates (95% Wilson), latency, memory saved."""

from __future__ import annotations

from fastapi import APIRouter

from app.api.deps import ApiKey, Gateway
from app.api.errors import OpenAIError
from evaluators.signals import FLAG_RULES

router = APIRouter(dependencies=[ApiKey], tags=["moeprune"])

# Flags every arm reports (with a zero count when never raised), so arms compare side by side.
REPORTED_FLAGS = [*FLAG_RULES, "refusal", "inconsistent"]


@router.get("/v1/experiments/{name}")
async def experiment_stats(name: str, gateway: Gateway) -> dict:
    experiment = gateway.config.experiments.get(name)
    if experiment is None:
        known = ", ".join(sorted(gateway.config.experiments)) or "(none configured)"
        raise OpenAIError(404, f"unknown experiment {name!r}; known: {known}", param="name",
                          code="experiment_not_found")
    stats = gateway.experiment_stats[name]
    arms = {}
    for arm, weight in experiment.arms.items():
        summary = stats.arms[arm].summary(REPORTED_FLAGS)
        footprint = gateway.footprints.get(arm)
        summary["weight"] = weight
        summary["memory"] = None if footprint is None else footprint.describe()
        arms[arm] = summary
    return {"object": "experiment", "name": name, "sticky": experiment.sticky, "arms": arms}
