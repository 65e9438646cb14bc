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


class TaskGateShare(_Model):
    """One task under the domain gate's threshold (evaluators/gate_quality.py task_shares)."""

    domain: str
    n: int = Field(ge=0)
    in_domain_share: float = Field(ge=0, le=1)


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
    per_task: dict[str, TaskGateShare] = Field(default_factory=dict)  # cards before it: empty


class Interval(_Model):
    """A statistic with its 95% bootstrap interval (None where it is undefined, e.g. one class only)."""

    value: float | None
    ci95: list[float] | None = None


class RiskModelSpec(_Model):
    """moeprune.reliability.risk_model.RiskModel as stored (logistic over standardised signals, then isotonic)."""

    features: list[str]
    means: list[float]
    scales: list[float]
    coef: list[float]
    intercept: float
    iso_x: list[float]
    iso_y: list[float]


class CertificateSpec(_Model):
    """moeprune.reliability.certificate.CertificateResult as stored."""

    alpha: float = Field(gt=0, lt=1)
    delta: float = Field(gt=0, lt=1)
    status: Literal["certified", "uncertified"]
    threshold: float | None
    coverage: float | None
    n_unflagged: int = Field(ge=0)
    errors_unflagged: int = Field(ge=0)
    realised_error: float | None
    error_upper: float | None
    n_calibration: int = Field(ge=0)
    n_fit: int = Field(ge=0)
    tested: int = Field(ge=0)
    reason: str | None = None


class FormFigures(_Model):
    """One answer form within a (variant, domain): diagnostics on the certifying half (evaluators/answer_forms.py)."""

    n: int = Field(ge=0)  # answers of this form that assert something
    n_wrong: int = Field(ge=0)
    n_certifying: int = Field(ge=0)
    n_unflagged: int = Field(ge=0)  # of the certifying half, served without a flag
    errors_unflagged: int = Field(ge=0)
    realised_error: float | None
    error_upper: float | None  # one-sided Clopper-Pearson at the section's delta


class DomainReliability(_Model):
    """One (variant, domain): the p_wrong model, its certificate and how well the scores separate."""

    n: int = Field(ge=0)  # labelled answers that assert something (abstentions are counted apart)
    n_wrong: int = Field(ge=0)
    n_abstained: int = Field(0, ge=0)
    n_unparsed: int = Field(0, ge=0)  # counted as wrong
    model: RiskModelSpec | None = None
    certificate: CertificateSpec
    # signal name (and "p_wrong") -> {"auroc"|"auprc"|"aurc": Interval}; held-out split for p_wrong
    quality: dict[str, dict[str, Interval]] = Field(default_factory=dict)
    ece: Interval | None = None
    brier: Interval | None = None
    risk_coverage: list[list[float]] = Field(default_factory=list)  # [coverage, error among served] pairs
    # "choice" / "free_text" -> how each form fared (cards written before forms were told apart: empty)
    by_form: dict[str, FormFigures] = Field(default_factory=dict)


class ReliabilitySection(_Model):
    """Certified flags (docs/reliability.md): per domain, bound to the weights and labelled data they hold for."""

    alpha: float = Field(gt=0, lt=1)
    delta: float = Field(gt=0, lt=1)
    weights_sha256: str | None  # moeprune.formats.hashing.weights_digest of the evaluated checkpoint
    labels_sha256: str  # sha256 of the labelled records the models and certificates were fitted on
    base_check: bool  # whether base_mean_logprob was among the signals
    gate_sha256: str | None = None  # the domain gate that assigned domains (None: one domain, "all")
    gate_threshold: float | None = None  # the gate threshold that assigned them (P(in-domain) >= it: in_domain)
    base_check_off: str | None = None  # why base_mean_logprob is not among the signals (None: it is)
    split_seed: int = 0
    domains: dict[str, DomainReliability]
    without_base_check: dict[str, DomainReliability] | None = None  # the same, with the base cross-check off


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
    reliability: ReliabilitySection | None = None

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
            raise UserError(
                f"report card {path} is not a schema-version-{SCHEMA_VERSION} report card: "
                f"{validation_problems(exc)}; re-create it with moeprune eval"
            ) from None

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
