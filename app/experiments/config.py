"""The `control`, `decide` and `guardrail` settings of an experiment in variants.yaml.

experiments:
  ab:
    arms: {base: 50, pruned-50: 50}
    control: base
    decide:
      outcome: {margin: 0.02}                 # pruned may be at most 2 points worse (feedback mean)
      flags: {low_confidence: {margin: 0.03}} # ... and raise the flag on at most 3 points more answers
      alpha: 0.05
    guardrail: {flag: low_confidence, stop_if_worse_by: 0.10}
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from moeprune.reliability.signals import FLAG_RULES

# Flags the gateway raises (app/reliability/verdict.py, app/serving/assess.py): what `decide` and
# `guardrail` may name. A misspelt flag would never be raised, so the verdict could never come.
# `refusal`: an abstention (reliability.abstained); `above_risk` / `uncertified`: the certificate's flags.
DECIDABLE_FLAGS = (*FLAG_RULES, "refusal", "inconsistent", "above_risk", "uncertified")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class Margin(_Strict):
    margin: float = Field(ge=0, le=1, description="how much worse the arm may be, in points of the rate (0.02 = 2)")


def _known_flag(flag: str) -> str:
    if flag not in DECIDABLE_FLAGS:
        raise ValueError(f"unknown flag {flag!r}; known: {', '.join(DECIDABLE_FLAGS)}")
    return flag


class Decide(_Strict):
    outcome: Margin | None = Field(None, description="feedback mean (score, or good=1/bad=0): higher is better")
    flags: dict[str, Margin] = Field(default_factory=dict, description="flag rates: lower is better")
    alpha: float = Field(0.05, gt=0, le=0.2, description="chance of a wrong verdict, over the whole experiment")

    @field_validator("flags")
    @classmethod
    def known_flags(cls, flags: dict[str, Margin]) -> dict[str, Margin]:
        for flag in flags:
            _known_flag(flag)
        return flags


class Guardrail(_Strict):
    flag: str
    stop_if_worse_by: float = Field(
        gt=0, le=1, description="stop an arm once its flag rate is conclusively this much above control's"
    )

    @field_validator("flag")
    @classmethod
    def known(cls, flag: str) -> str:
        return _known_flag(flag)


def check_decision_settings(
    name: str, arms: dict[str, float], control: str | None, decide: Decide | None, guardrail: Guardrail | None
) -> None:
    """`control` must be an arm; `decide` and `guardrail` compare against it, so they need it."""
    if control is not None and control not in arms:
        raise ValueError(f"experiments.{name}.control: {control!r} is not one of its arms ({', '.join(arms)})")
    for field, value in (("decide", decide), ("guardrail", guardrail)):
        if value is not None and control is None:
            raise ValueError(f"experiments.{name}.{field}: needs `control:` (the arm the others are compared with)")
