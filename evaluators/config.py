"""`EvalConfig`: every `run_eval` option with its default and its help text.

`moeprune eval` generates the flags of the plain options from these fields (moeprune/cli_config.py).
Options that are objects built from several flags (thinking, lm_eval, summary_scorers, gate) and the
judge options, whose flags belong to the "judges and summary scorers" group of
evaluators/summary_quality.py, have no generated flag (`exclude=True`); evaluators/commands/eval.py
builds them by hand. Checked values (flag_precision, limit, alpha, ...) are checked by run_eval itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from moeprune.cli_config import cli
from moeprune.reliability.certificate import DEFAULT_ALPHA, DEFAULT_DELTA

MODEL_DIR_GATE = "model_dir"  # run_eval's default gate: the model dir's domain_gate.json, if it has one

PYTHON_ONLY = cli(exclude=True)


class EvalConfig(BaseModel):
    """How `run_eval` evaluates a variant (the endpoint, model, tasks and output directory are arguments)."""

    model_config = ConfigDict(extra="forbid")

    variant: str | None = Field(None, description="variant name in the report card (default: the model name)")
    model_dir: str | Path | None = Field(
        None, description="the variant's checkpoint dir (its pruning.json goes into the card)"
    )
    base_endpoint: str | None = Field(None, description="endpoint of the unpruned base (recovery, base_disagreement)")
    base_model: str | None = Field(None, description="model name of the base at --base-endpoint")
    base_variant: str | None = Field(None, description="name of the base variant in the card (default: --base-model)")
    api_key: str | None = Field(
        None, description="API key for the endpoints (prefer --api-key-env)", json_schema_extra=PYTHON_ONLY
    )  # the CLI's flag shares a group with --api-key-env
    concurrency: int = Field(4, description="requests in flight per endpoint (default 4)")
    limit: int | None = Field(None, description="evaluate at most N items per task")
    max_tokens: int | None = Field(
        None,
        description="cap every task's new tokens at N (quick runs; the card's decoding shows what was sent)",
        json_schema_extra=cli(metavar="N"),
    )
    flag_precision: float = Field(0.8, description="target precision of the calibrated flag thresholds (default 0.8)")
    seed: int = Field(0, description="seed of the calibration split and judge order")
    cache_path: str | Path | None = Field(
        None,
        description="response cache file (default OUT/cache/responses.jsonl); share one between variant "
        "runs so the base is asked only once",
        json_schema_extra=cli(flag="--cache"),
    )
    progress: bool = Field(True, description="show progress bars", json_schema_extra=cli(help="no progress bars"))
    alpha: float = Field(
        DEFAULT_ALPHA, description="certified error rate among unflagged answers (default 0.05; docs/reliability.md)"
    )
    delta: float = Field(DEFAULT_DELTA, description="allowed probability that the certificate is wrong (default 0.05)")
    split_seed: int = Field(0, description="seed of the fit/certify split of the reliability section (default 0)")

    # Flags declared in evaluators/summary_quality.py's group (judges and summary scorers).
    judge_endpoint: str | list[str] | None = Field(
        None, description="judge endpoint(s) of the pairwise variant-vs-base instrument", json_schema_extra=PYTHON_ONLY
    )
    judge_model: str | list[str] | None = Field(
        None, description="the judges' model name(s)", json_schema_extra=PYTHON_ONLY
    )
    judge_api_key: str | None = Field(
        None, description="API key for the judge endpoints", json_schema_extra=PYTHON_ONLY
    )
    judge_allow_tie: bool = Field(
        False, description="let the pairwise judge answer 'tie' (default: forced choice)", json_schema_extra=PYTHON_ONLY
    )
    nli_model: str | Path | None = Field(
        None, description="local NLI model: the SummaC-ZS shorthand of summary_scorers", json_schema_extra=PYTHON_ONLY
    )

    # Objects built from several flags by the command (or passed by Python callers).
    thinking: Any = Field(
        None,
        description="an evaluators.thinking.ThinkingControl: the run's chat_template_kwargs "
        "/ reasoning_effort (a task's own override them)",
        json_schema_extra=PYTHON_ONLY,
    )
    lm_eval: Any = Field(
        None,
        description="an evaluators.lm_eval_bridge.LmEvalRun whose results are folded into the card",
        json_schema_extra=PYTHON_ONLY,
    )
    summary_scorers: Any = Field(
        None,
        description="an evaluators.summary_quality.SummaryScorers (SummaC, BERTScore, the claim judge)",
        json_schema_extra=PYTHON_ONLY,
    )
    gate: Any = Field(
        MODEL_DIR_GATE,
        description="the domain gate assigning each item's gate_domain: a "
        "GateAssignment, a domain_gate.json path, MODEL_DIR_GATE (the one "
        "in model_dir, if any) or None",
        json_schema_extra=PYTHON_ONLY,
    )
