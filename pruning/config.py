"""`PruneConfig`: every `run_prune` option with its default and its help text.

`moeprune prune` generates its flags from these fields (moeprune/cli_config.py); `run_prune` takes a
PruneConfig or the same options as keyword arguments. Fields whose values the pipeline checks itself
(method, allocation, observe, ratio, ...) are typed loosely and list their CLI choices in `cli(choices=)`,
so a Python caller keeps the pipeline's own error messages ("valid methods: ...").
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from moeprune.cli_config import cli
from pruning.methods import METHODS
from pruning.observe import DTYPES
from pruning.selection import ALLOCATIONS

OBSERVE_MODES = ("stream", "whole")

HOW = "how experts are chosen (a method and ratio, or a mask)"
PASS = "calibration pass"
GATE = "the gateway's domain gate (fitted on the calibration files)"


class PruneConfig(BaseModel):
    """How `run_prune` chooses the experts to keep and observes the model (the source and output are arguments)."""

    model_config = ConfigDict(extra="forbid")

    # how experts are chosen
    method: str | None = Field(
        None, description="scoring method", json_schema_extra=cli(choices=list(METHODS), group=HOW)
    )
    ratio: float | None = Field(
        None, description="share of experts to REMOVE per MoE layer, in [0, 1)", json_schema_extra=cli(group=HOW)
    )
    mask_file: str | Path | None = Field(
        None,
        description="kept experts per MoE layer (the study's expert_mask.json)",
        json_schema_extra=cli(flag="--mask", metavar="MASK.json", group=HOW),
    )
    allocation: str = Field(
        "uniform",
        description="uniform: the same count per layer; global: one budget ranked across layers; "
        "coverage: each layer keeps experts until it covers as much of its score mass as "
        "the others (global and coverage may keep different counts per layer)",
        json_schema_extra=cli(choices=ALLOCATIONS, group=HOW),
    )
    min_experts: int | None = Field(
        None,
        description="per-layer floor for --allocation global or coverage (default: top-k)",
        json_schema_extra=cli(group=HOW),
    )
    seed: int = Field(
        0, description="seed for sampling calibration data and for 'random'", json_schema_extra=cli(group=HOW)
    )

    # calibration pass
    calibration: list[str | Path] = Field(
        [],
        description="*.jsonl ({'text'}, {'messages'} or MedINST {'instruction','input','output'}), *.txt, "
        "or PubMedQA *.json; FILE:N draws N samples from that file alone",
        json_schema_extra=cli(metavar="FILE[:N]", group=PASS),
    )
    samples: int = Field(
        128,
        description="documents drawn from the files given without :N, together (default 128)",
        json_schema_extra=cli(group=PASS),
    )
    chat_template_kwargs: dict[str, Any] | str | None = Field(
        None,
        description="extra chat-template arguments as a JSON object, e.g. '{\"enable_thinking\": false}'",
        json_schema_extra=cli(metavar="JSON", group=PASS),
    )
    max_tokens: int = Field(
        2048, description="tokens kept per document (default 2048)", json_schema_extra=cli(group=PASS)
    )
    device: str = Field(
        "cpu", description="torch device for the pass, e.g. cpu, cuda, cuda:1", json_schema_extra=cli(group=PASS)
    )
    dtype: str = Field(
        "bfloat16",
        description="weight dtype for the pass (default bfloat16; statistics are summed in float64)",
        json_schema_extra=cli(choices=DTYPES, group=PASS),
    )
    observe: str = Field(
        "stream",
        description="stream: one decoder layer in memory at a time, read from the "
        "shards (default); whole: load the whole model first",
        json_schema_extra=cli(choices=OBSERVE_MODES, group=PASS),
    )
    offload_activations: bool = Field(
        False,
        description="keep the streamed pass's hidden states in CPU memory when they do not fit on the device",
        json_schema_extra=cli(group=PASS),
    )
    batch_tokens: int = Field(8192, description="padded tokens per forward batch", json_schema_extra=cli(group=PASS))
    ean_max_tokens: int | None = Field(
        None,
        description="at most this many tokens per layer (stream order) on which EAN runs every expert "
        "(default 4096; no cap with --ean-tokens-per-sample)",
        json_schema_extra=cli(group=PASS),
    )
    ean_tokens_per_sample: int | None = Field(
        None,
        description="EAN runs every expert on the first N tokens of every sample (the study: 256)",
        json_schema_extra=cli(metavar="N", group=PASS),
    )
    scores_out: str | Path | None = Field(
        None,
        description="save the pass's statistics (re-score without a pass)",
        json_schema_extra=cli(metavar="FILE", group=PASS),
    )
    scores_in: str | Path | None = Field(
        None, description="reuse statistics saved with --scores-out", json_schema_extra=cli(metavar="FILE", group=PASS)
    )

    # the gateway's domain gate
    gate_reference: list[str | Path] | None = Field(
        None,
        description="general-domain texts the gate learns to tell apart (default: the shipped set)",
        json_schema_extra=cli(metavar="FILE", group=GATE),
    )
    domain_gate: bool = Field(
        True,
        description="fit the gateway's domain gate on the calibration files and write domain_gate.json",
        json_schema_extra=cli(help="write no domain_gate.json", group=GATE),
    )  # the flag: --no-domain-gate

    dequantize: bool = Field(
        False,
        description="write gpt-oss's MXFP4 experts as plain bfloat16 weights (the dtype config.json "
        "declares) and drop quantization_config: vLLM CPU serves MXFP4 experts only on CPUs "
        "with AMX, the dequantized checkpoint on any x86 CPU (its experts take ~4x the bytes)",
    )
    overwrite: bool = Field(False, description="replace an existing OUT_DIR")
    progress: bool = Field(
        True, description="show progress bars during the pass", json_schema_extra=cli(exclude=True)
    )  # Python callers only (the CLI always shows them)
