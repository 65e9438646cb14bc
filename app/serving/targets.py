"""Which variant serves a request: `model` names a variant, or an experiment that picks an arm."""

from __future__ import annotations

from dataclasses import dataclass

from app.errors import OpenAIError
from app.routing.experiments import choose_arm, sticky_key
from app.state import GatewayState


@dataclass(frozen=True)
class Target:
    variant: str
    experiment: str = ""  # "" when the request named a variant directly

    def headers(self) -> dict[str, str]:
        headers = {"x-moe-variant": self.variant}
        if self.experiment:
            headers["x-moe-experiment"] = self.experiment
        return headers


def resolve_target(gateway: GatewayState, model: str, headers, user: object) -> Target:
    config = gateway.config
    if model in config.variants:
        return Target(model)
    experiment = config.experiments.get(model)
    if experiment is None:
        known = ", ".join(sorted([*config.variants, *config.experiments]))
        raise OpenAIError(
            404,
            f"unknown model {model!r}; known variants and experiments: {known}",
            param="model",
            code="model_not_found",
        )
    key = sticky_key(headers.get(experiment.sticky), user)
    # An arm a guardrail stopped sends its users to control (app/experiments/service.py).
    arm = gateway.experiments.route(model, experiment, choose_arm(model, experiment.arms, key, gateway.rng))
    gateway.metrics.assignments.labels(model, arm).inc()
    return Target(arm, model)
