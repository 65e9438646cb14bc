"""`report_card.json`: the one definition of the file `moeprune eval` writes and the gateway, `moeprune
report` and the demo read (docs/contracts.md points here).

`ReportCard.load` is the strict reader every consumer goes through, so a
malformed card fails with the same message everywhere; `ReportCard.write` is
the only writer (atomic rename, no NaN).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

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


class TaskResult(_Model):
    domain: str | None = None
    kind: str
    n: int = Field(ge=0)
    version: int | str | None = None
    format: str | None = None
    metrics: dict[str, MetricResult]


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
