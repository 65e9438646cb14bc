"""`telemetry:` of a variant in variants.yaml: read vLLM's routed_experts from its answers."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


class TelemetryOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    routed_experts: bool = Field(False, description="the engine runs with --enable-return-routed-experts")
    label: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9_.-]{1,64}$",
        description="app label counts are kept under (default: experiment, else variant)",
    )
    window_s: float = Field(600, gt=0, le=86400, description="sliding window of the pruned-expert hit ratio")
    config: Path | None = Field(None, description="the model's config.json (default: the variant's model dir)")
    # On a pruned variant: where its pruning.json is when it has no model dir here (a url: variant).
    manifest: Path | None = Field(None, description="the variant's pruning.json (default: in its model dir)")
