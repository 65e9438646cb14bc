"""`guard:` of a variant in variants.yaml: which fallback takes what, and checks that the names resolve."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from moeprune.reliability.signals import FLAG_RULES

# Flags an answer can raise besides the token-signal rules (app/reliability/verdict.py, app/serving/assess.py).
# `refusal` is not a flag any more (an abstention travels as `reliability.abstained`); a cascade may still
# name it, to re-ask the fallback when the variant abstains.
EXTRA_FLAGS = ("refusal", "inconsistent")
# The certificate's flags (docs/reliability.md): what `cascade: true` escalates on.
CERTIFIED_FLAGS = ("above_risk", "uncertified")
CASCADE_FLAGS = (*FLAG_RULES, *EXTRA_FLAGS, *CERTIFIED_FLAGS)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DomainGateOptions(_Strict):
    fallback: str = Field(description="variant that answers out-of-domain requests (usually the base)")
    threshold: float | None = Field(None, ge=0, le=1, description="default: the report card's, else the gate file's")
    file: Path | None = Field(None, description="domain_gate.json (default: in the variant's model dir)")


class CascadeOptions(_Strict):
    flags: list[str] = Field(min_length=1, description="flags of the variant's answer that re-ask the fallback")
    fallback: str

    @field_validator("flags")
    @classmethod
    def known_flags(cls, flags: list[str]) -> list[str]:
        unknown = [flag for flag in flags if flag not in CASCADE_FLAGS]
        if unknown:
            raise ValueError(f"unknown flag(s) {', '.join(unknown)}; known: {', '.join(CASCADE_FLAGS)}")
        return flags


class GuardOptions(_Strict):
    domain_gate: DomainGateOptions | None = None
    cascade: CascadeOptions | None = None


def check_guard(name: str, guard: GuardOptions | None, variants: dict) -> None:
    """Raise ValueError (the config's validator turns it into a UserError naming the field) on a bad fallback."""
    if guard is None:
        return
    for kind, options in (("domain_gate", guard.domain_gate), ("cascade", guard.cascade)):
        if options is None:
            continue
        where = f"variants.{name}.guard.{kind}.fallback"
        if options.fallback == name:
            raise ValueError(f"{where}: a variant cannot be its own fallback; name its base")
        if options.fallback not in variants:
            raise ValueError(f"{where}: unknown variant {options.fallback!r}; known: {', '.join(sorted(variants))}")
    gate = guard.domain_gate
    if gate is not None and gate.file is None and variants[name].model is None:
        raise ValueError(
            f"variants.{name}.guard.domain_gate.file: a url: variant has no model dir to find "
            "domain_gate.json in; give its path"
        )
