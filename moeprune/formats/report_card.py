"""`report_card.json`: the one definition of the file `moeprune eval` writes and the gateway, `moeprune
report` and the demo read (docs/contracts.md points here).

`ReportCard.load` is the strict reader every consumer goes through, so a
malformed card fails with the same message everywhere; `ReportCard.write` is
the only writer (atomic rename, no NaN).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from moeprune.errors import UserError, validation_problems

SCHEMA_VERSION = 1
CARD_NAME = "report_card.json"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MetricResult(_Model):
    value: float | None
    ci95: list[float] | None = None
    recovery: float | None = None
    unavailable: str | None = None


class SkippedRows(_Model):
    count: int = Field(ge=1)
    lines: list[int] = Field(default_factory=list)


class ThinkingSent(_Model):
    chat_template_kwargs: dict[str, Any] | None = None
    reasoning_effort: str | None = None


class TaskResult(_Model):
    domain: str | None = None
    kind: str
    n: int = Field(ge=0)
    version: int | str | None = None
    format: str | None = None
    metrics: dict[str, MetricResult]
    n_skipped: int = Field(0, ge=0)  # data rows the loader could not interpret (evaluators/loaders/common.py)
    skipped: dict[str, SkippedRows] = Field(default_factory=dict)  # reason -> count and first lines
    decoding: dict[str, float | int | str | bool | None] | None = None  # the task's sampling settings as sent
    n_failed: int = Field(0, ge=0)  # items the endpoint refused or failed at run time (a rerun retries them)
    failures: dict[str, int] = Field(default_factory=dict)  # reason -> failed items
    n_truncated: int = Field(0, ge=0)  # items scored with a prompt cut to the context (overlong: truncate)
    thinking: ThinkingSent | None = None  # what the task's chat requests carried (evaluators/thinking.py)
    judges: dict[str, dict[str, MetricResult]] | None = None  # judge label -> its own pairwise shares


class FlagCalibration(_Model):
    """A flag's calibrated threshold and how well it detects wrong answers (extra fields: flag_quality's)."""

    model_config = ConfigDict(extra="allow", frozen=True)
    signal: str
    direction: Literal["below", "above"]
    threshold: float | None
    auroc: float | None = None
    precision: float | None = None
    recall: float | None = None
    base_rate: float | None = None


class PruningSummary(_Model):
    """From the variant's pruning.json; expert counts per MoE layer, totals named as totals."""

    method: str | None = None
    ratio: float | None = None
    experts_kept: int | float | None = None
    experts_total: int | None = None
    experts_kept_total: int | None = None
    experts_before_total: int | None = None
    bytes_saved: int | None = None


class SignalQuality(_Model):
    direction: Literal["below", "above"]
    auroc: float | None
    n: int


class DomainGateQuality(_Model):
    """The variant's domain gate on the card's tasks (evaluators/gate_quality.py; `moeprune eval --gate-recall`)."""

    in_domain: str
    n_in_domain: int = Field(ge=0)
    n_cross_domain: int = Field(ge=0)
    auroc: float | None
    target_recall: float
    threshold: float
    recall: float
    cross_domain_fallback_rate: float


class ReportCard(_Model):
    schema_version: Literal[1]
    variant: str
    model: str
    model_dir: str | None = None
    pruning: PruningSummary | None = None
    base: str | None = None
    endpoint: str | None = None
    tasks: dict[str, TaskResult]
    flags: dict[str, FlagCalibration] = Field(default_factory=dict)
    flags_unavailable: dict[str, str] = Field(default_factory=dict)
    signal_quality: dict[str, SignalQuality] = Field(default_factory=dict)
    seed: int | None = None
    domain_gate: DomainGateQuality | None = None

    @classmethod
    def load(cls, path: str | Path) -> ReportCard:
        """The card at `path` (a report_card.json or the directory holding one); a UserError if malformed."""
        path = Path(path)
        if path.is_dir():
            path = path / CARD_NAME
        if not path.is_file():
            raise UserError(f"report card {path} does not exist; pass the {CARD_NAME} that moeprune eval wrote")
        try:
            return cls.model_validate_json(path.read_bytes())
        except ValidationError as exc:
            raise UserError(f"report card {path} is not a schema-version-{SCHEMA_VERSION} report card: "
                            f"{validation_problems(exc)}; re-create it with moeprune eval") from None

    def write(self, out_dir: str | Path) -> Path:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / CARD_NAME
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.as_dict(), indent=2, allow_nan=False) + "\n")
        tmp.replace(path)
        return path

    def as_dict(self) -> dict:
        return self.model_dump(mode="json", exclude_unset=True)  # the shape it was written in
