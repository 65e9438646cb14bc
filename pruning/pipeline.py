"""`run_prune`: observe -> score -> select -> write, or apply a published mask -> write.

Everything cheap is checked before the expensive pass (paths, family, method,
ratio feasibility), so a typo fails in a second, not after an hour of
observation.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from moeprune.cli_config import validate_options
from moeprune.errors import UserError
from moeprune.formats.checkpoint import Checkpoint
from moeprune.formats.domain_gate import GATE_NAME
from moeprune.formats.expert_counts import uneven_architectures
from moeprune.formats.jsonfile import read_json
from moeprune.formats.statistics import ExpertStats
from pruning.config import OBSERVE_MODES, PruneConfig
from pruning.masks import mask_to_ranked, read_mask
from pruning.methods import get_method
from pruning.selection import Ranked, Routing, check_ratio, select


def read_source(source_dir) -> tuple[Path, dict, object]:
    """The source directory, its config.json and its family, with errors that say what to pass."""
    from moeprune.formats.families import family_for

    source = Path(source_dir)
    if not source.is_dir():
        raise UserError(
            f"source {source} is not a directory; pass a Hugging Face checkpoint directory "
            "(config.json + *.safetensors)"
        )
    config_path = source / "config.json"
    config = read_json(config_path, f"{source} has no config.json; pass a Hugging Face checkpoint directory")
    if not any(source.glob("*.safetensors")):
        raise UserError(
            f"{source} has no *.safetensors files; only safetensors checkpoints can be pruned "
            "(convert .bin weights with transformers' save_pretrained first)"
        )
    return source, config, family_for(config)


def moe_layer_indices(source: Path, config: dict, family) -> list[int]:
    """Decoder-layer indices of the MoE layers (the family reads them from the config)."""
    layers = family.moe_layers(config)
    if not layers:
        raise UserError(f"{source}: the {family.model_type} config declares no MoE layers; nothing to prune")
    return sorted(layers)


def config_sha256(source: Path) -> str:
    return hashlib.sha256((source / "config.json").read_bytes()).hexdigest()


def check_stats_match(stats: ExpertStats, family, routing: Routing, layers: list[int], where: str) -> None:
    if stats.model_type != family.model_type or stats.num_experts != routing.num_experts:
        raise UserError(
            f"{where} was observed on a {stats.model_type} model with {stats.num_experts} experts, "
            f"not this {family.model_type} model with {routing.num_experts}; re-run the pass"
        )
    if sorted(stats.layers) != layers:
        raise UserError(f"{where} covers MoE layers {sorted(stats.layers)}, this model has {layers}; re-run the pass")


def observe_source(
    checkpoint: Checkpoint,
    calibration,
    *,
    samples,
    max_tokens,
    seed,
    device,
    dtype,
    batch_tokens,
    ean_max_tokens,
    ean_tokens_per_sample=None,
    chat_template_kwargs=None,
    observe="stream",
    offload_activations=False,
    progress=True,
) -> ExpertStats:
    """A new calibration pass over the opened source checkpoint (its headers are not read again)."""
    from transformers import AutoTokenizer

    from pruning.calibration import load_calibration
    from pruning.layer_stream import observe_streamed
    from pruning.observe import load_model
    from pruning.observe import observe as observe_whole

    source, config, family = checkpoint.path, checkpoint.config, checkpoint.family
    tokenizer = AutoTokenizer.from_pretrained(str(source))
    calibration_set = load_calibration(
        calibration,
        tokenizer,
        samples=samples,
        max_tokens=max_tokens,
        seed=seed,
        chat_template_kwargs=chat_template_kwargs,
    )
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    rule = dict(
        batch_tokens=batch_tokens,
        ean_max_tokens=ean_max_tokens,
        ean_tokens_per_sample=ean_tokens_per_sample,
        pad_token_id=pad,
        progress=progress,
    )
    if observe == "whole":
        model = load_model(checkpoint, family, device=device, dtype=dtype)
        stats = observe_whole(model, family, config, calibration_set.sequences, **rule)
    else:
        stats = observe_streamed(
            checkpoint,
            family,
            config,
            calibration_set.sequences,
            device=device,
            dtype=dtype,
            offload_activations=offload_activations,
            **rule,
        ).stats
    # The EAN rule goes with the token stream, so --scores-in carries it into pruning.json too.
    stats.calibration = {**calibration_set.record, "ean": stats.ean_rule()}
    stats.source = {"path": str(source), "config_sha256": config_sha256(source)}
    return stats


def check_observe_mode(observe: str, offload_activations: bool) -> None:
    if observe not in OBSERVE_MODES:
        raise UserError(
            f"unknown observe mode {observe!r}; use stream (one decoder layer in memory at a time) "
            "or whole (the whole model loaded)",
            param="observe",
        )
    if offload_activations and observe != "stream":
        raise UserError(
            "offload_activations keeps the layer-streamed pass's hidden states on the CPU; it needs observe stream",
            param="offload_activations",
        )


def gather_stats(checkpoint: Checkpoint, routing, layers, method, *, calibration, scores_in, **pass_options):
    """Statistics from --scores-in, from a new pass over --calibration, or none needed (random)."""
    if scores_in and calibration:
        raise UserError(
            "give either calibration files (run a new pass) or scores_in (reuse one), not both", param="scores_in"
        )
    if scores_in:
        stats = ExpertStats.load(scores_in)
        check_stats_match(stats, checkpoint.family, routing, layers, str(scores_in))
        return stats
    if calibration:
        return observe_source(checkpoint, calibration, **pass_options)
    if not method.needs_calibration:
        return ExpertStats.empty(checkpoint.family.model_type, routing.num_experts, routing.top_k, layers)
    raise UserError(
        f"method {method.name!r} needs calibration files (or scores_in from an earlier pass)", param="calibration"
    )


def plan_from_scores(
    checkpoint: Checkpoint,
    routing,
    layers,
    *,
    method,
    ratio,
    allocation,
    min_experts,
    seed,
    calibration,
    scores_in,
    scores_out,
    pass_options,
) -> tuple[Ranked, dict]:
    chosen = get_method(method)
    ratio = check_ratio(ratio)
    # Feasibility on all-equal scores first: an impossible ratio fails before the pass.
    select({layer: [0.0] * routing.num_experts for layer in layers}, ratio, routing, allocation, min_experts)
    if allocation != "uniform":
        # Counts may come out different per layer: a family without an uneven class fails now, not after the pass.
        uneven_architectures(checkpoint.family, checkpoint.config)
    stats = gather_stats(
        checkpoint, routing, layers, chosen, calibration=calibration, scores_in=scores_in, seed=seed, **pass_options
    )
    scores = chosen.score(stats, seed)
    ranked = select(scores, ratio, routing, allocation, min_experts)
    if scores_out:
        stats.save(scores_out, scores={method: {str(k): v for k, v in scores.items()}})
    provenance = {
        "method": method,
        "ratio": ratio,
        "allocation": allocation,
        "seed": seed,
        "mask_file": None,
        "min_experts": min_experts,
        "calibration": stats.calibration,
        "scores_file": str(scores_in) if scores_in else None,
        "observation": {
            **pass_record(pass_options, ran=bool(calibration) and not scores_in),
            "ean_max_tokens": stats.ean_max_tokens,
            "ean_tokens_per_sample": stats.ean_tokens_per_sample,
            "tokens_per_layer": {str(k): v.tokens for k, v in sorted(stats.layers.items())},
        },
    }
    return ranked, provenance


def pass_record(pass_options: dict, ran: bool) -> dict:
    """How this run's pass observed the model (all None when the statistics came from elsewhere)."""
    keys = ("observe", "dtype", "device", "offload_activations")
    record = {key: pass_options.get(key) if ran else None for key in keys}
    return {"mode": record.pop("observe"), **record}


def plan_from_mask(layers, routing, mask_file, seed) -> tuple[Ranked, dict]:
    ranked = mask_to_ranked(read_mask(mask_file), layers, routing, where=str(mask_file))
    kept_total = sum(len(kept) for kept in ranked.values())
    uniform = len({len(kept) for kept in ranked.values()}) == 1
    provenance = {
        "method": "mask",
        "ratio": round(1 - kept_total / (routing.num_experts * len(layers)), 6),
        "allocation": "uniform" if uniform else "global",
        "seed": seed,
        "mask_file": str(mask_file),
        "calibration": None,
    }
    return ranked, provenance


def run_prune(source_dir, out_dir, config: PruneConfig | None = None, **options) -> Path:
    """Prune `source_dir` into `out_dir`; returns the output directory (with pruning.json).

    The options are a `PruneConfig` (pruning/config.py: every option, its default and its meaning) and/or
    its fields as keyword arguments (they override `config`'s), e.g. `run_prune(src, out, method="reap",
    ratio=0.5, calibration=["med.jsonl"])`. A value of the wrong type is a UserError naming the option.

    `calibration` items may be `FILE:N` (N samples from that file); `chat_template_kwargs` is a dict or a
    JSON object text; EAN's token rule is `ean_tokens_per_sample` and/or `ean_max_tokens` (see
    `pruning.observe.default_ean_limits`). With calibration files and `domain_gate`, the variant's
    domain gate is fitted on them against `gate_reference` (default: the shipped general set).
    `observe` is "stream" (one decoder layer in memory at a time, `pruning.layer_stream`) or "whole".
    """
    from pruning.calibration import parse_chat_template_kwargs
    from pruning.observe import default_ean_limits

    config = validate_options(PruneConfig, config, options, caller="run_prune")
    chat_template_kwargs = parse_chat_template_kwargs(config.chat_template_kwargs)
    ean_max_tokens, ean_tokens_per_sample = default_ean_limits(config.ean_max_tokens, config.ean_tokens_per_sample)
    check_observe_mode(config.observe, config.offload_activations)
    source, model_config, family = read_source(source_dir)
    routing = Routing.from_config(family, model_config)
    layers = moe_layer_indices(source, model_config, family)
    from pruning.shard_checks import open_checked

    # Truncated shard, missing tensor, wrong dtype: fail now, before any pass or write. This one opened
    # checkpoint (index, headers, config) is what the pass and the writer use: nothing parses them again.
    checkpoint = open_checked(source, model_config)
    check_dequantize(model_config, config.dequantize)
    out = Path(out_dir)
    if out.exists() and not config.overwrite:
        raise UserError(
            f"output {out} already exists; choose another output directory or allow overwrite", param="overwrite"
        )
    calibration = list(config.calibration or ())
    if config.mask_file is not None:
        extra = [
            name
            for name, value in (
                ("method", config.method),
                ("ratio", config.ratio),
                ("calibration", calibration),
                ("scores_in", config.scores_in),
            )
            if value
        ]
        if extra:
            raise UserError(f"a mask fixes the kept experts; drop {', '.join(extra)}", param=extra[0])
        ranked, provenance = plan_from_mask(layers, routing, config.mask_file, config.seed)
    elif config.method is None:
        raise UserError(
            "say how to choose experts: a method, a ratio and calibration files, or a mask file", param="method"
        )
    else:
        pass_options = dict(
            samples=config.samples,
            max_tokens=config.max_tokens,
            device=config.device,
            dtype=config.dtype,
            batch_tokens=config.batch_tokens,
            ean_max_tokens=ean_max_tokens,
            ean_tokens_per_sample=ean_tokens_per_sample,
            chat_template_kwargs=chat_template_kwargs,
            observe=config.observe,
            offload_activations=config.offload_activations,
            progress=config.progress,
        )
        ranked, provenance = plan_from_scores(
            checkpoint,
            routing,
            layers,
            method=config.method,
            ratio=config.ratio,
            allocation=config.allocation,
            min_experts=config.min_experts,
            seed=config.seed,
            calibration=calibration,
            scores_in=config.scores_in,
            scores_out=config.scores_out,
            pass_options=pass_options,
        )
    from pruning.writer import write_pruned

    provenance = {"family": family.model_type, **provenance, "ranked": {k: list(v) for k, v in ranked.items()}}
    kept = {layer: sorted(experts) for layer, experts in ranked.items()}
    # The gateway's domain gate, fitted on the same calibration files BEFORE the write: a bad reference file
    # then fails with nothing written, and the gate is written into the staging directory with the rest, so
    # it is in pruning.json's hashes and an interrupted run cannot leave a published variant without it.
    gate = fit_domain_gate(calibration, config.gate_reference) if calibration and config.domain_gate else None
    extra = {GATE_NAME: gate.save} if gate is not None else None
    return write_pruned(
        checkpoint, out, kept, provenance, overwrite=config.overwrite, extra_files=extra, dequantize=config.dequantize
    )


# Printed (not raised) when an MXFP4 checkpoint is pruned as MXFP4 on a CPU without AMX: it may be served elsewhere.
NO_AMX_NOTE = (
    "note: this checkpoint's experts are MXFP4, which vLLM CPU serves only on CPUs with AMX tiles, and "
    "this CPU has none: the pruned checkpoint will not serve on vLLM CPU here (a GPU or an AMX CPU "
    "can). Add --dequantize to write its experts as bfloat16 weights that vLLM CPU serves on any x86 "
    "CPU."
)


def cpu_has_amx() -> bool:
    """What vLLM CPU asks before it runs MXFP4 experts (`torch.cpu._is_amx_tile_supported`)."""
    import torch

    check = getattr(torch.cpu, "_is_amx_tile_supported", None)
    return bool(check()) if check is not None else False


def check_dequantize(model_config: dict, dequantize: bool, stream=None) -> None:
    """Before any pass: `--dequantize` needs MXFP4 experts; MXFP4 kept as MXFP4 on a CPU without AMX gets a note."""
    import sys

    from pruning import dequantize_write, mxfp4

    if dequantize:
        dequantize_write.require_quantized(model_config)
        dequantize_write.target_dtype(model_config)
    elif mxfp4.is_mxfp4(model_config) and not cpu_has_amx():
        print(NO_AMX_NOTE, file=stream or sys.stderr)


def fit_domain_gate(calibration, reference=None):
    """The domain gate of the calibration files (in-domain) vs `reference` (default: the shipped set)."""
    from pruning.calibration import parse_file_spec
    from pruning.domain_gate_files import build_gate

    return build_gate([parse_file_spec(spec).path for spec in calibration], reference)
