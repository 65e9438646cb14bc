"""The report card (docs/contracts.md `report_card.json`): assembly, pruning info, writing."""

from __future__ import annotations

import math
from pathlib import Path

from evaluators.labels import asserts_something, is_error, label_of
from evaluators.metrics.classification import auroc
from evaluators.metrics.flags import flag_quality
from moeprune.errors import UserError
from moeprune.formats.manifest import PruningManifest
from moeprune.formats.report_card import SCHEMA_VERSION, ReportCard  # noqa: F401  (re-exported)
from moeprune.reliability.signals import FLAG_RULES, SIGNAL_DIRECTIONS


def pruning_info(model_dir: str | Path | None) -> dict | None:
    """Method, ratio, experts kept/total and bytes saved from the model dir's pruning.json.

    None for an unpruned model (no pruning.json); a base model dir is fine.
    """
    if model_dir is None:
        return None
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise UserError(f"model_dir {model_dir} is not a directory", param="model_dir")
    manifest = PruningManifest.load(model_dir)
    if manifest is None:
        return None
    return {
        "method": manifest.method,
        "ratio": manifest.ratio,
        # Per MoE layer, as everywhere (docs/contracts.md); totals are named as totals.
        "experts_kept": manifest.experts_kept_per_layer,
        "experts_total": manifest.experts_per_layer_before,
        "experts_kept_total": manifest.experts_kept_total,
        "experts_before_total": manifest.experts_before_total,
        "bytes_saved": manifest.bytes_saved,
    }


def flags_section(records: list[dict], target_precision: float, seed: int) -> tuple[dict, dict]:
    """(flags, unavailable): per flag rule, its calibrated threshold and quality on labelled answers.

    Abstentions are left out (evaluators/labels.py): a refusal, right or not, is no error for a flag to catch.
    """
    flags, missing = {}, {}
    answered = [r for r in records if asserts_something(r)]
    for name, rule in FLAG_RULES.items():
        values = [r["signals"].get(rule.signal) for r in answered]
        present = [v for v in values if v is not None and not math.isnan(v)]
        if not answered:
            missing[name] = "no labelled answers (multiple-choice or exact-match, not abstaining) to calibrate on"
            continue
        if not present:
            missing[name] = (
                "no base endpoint given (--base-endpoint)"
                if rule.signal == "base_mean_logprob"
                else "the endpoint returned no token logprobs"
            )
            continue
        quality = flag_quality(
            values, [is_error(label_of(r)) for r in answered], rule.direction, target_precision, seed
        )
        if quality is None or quality["threshold"] is None:
            missing[name] = "not enough scored answers to choose a threshold"
            continue
        flags[name] = {
            "signal": rule.signal,
            "direction": rule.direction,
            **quality,
            "target_precision": target_precision,
        }
    return flags, missing


def signal_quality(records: list[dict]) -> dict:
    """AUROC of each signal for separating wrong from right answers (abstentions left out, as for flags)."""
    answered = [r for r in records if asserts_something(r)]
    out = {}
    for signal, direction in SIGNAL_DIRECTIONS.items():
        pairs = [(r["signals"].get(signal), is_error(label_of(r))) for r in answered]
        pairs = [(v, w) for v, w in pairs if v is not None and not math.isnan(v)]
        if pairs:
            oriented = [-v if direction == "below" else v for v, _ in pairs]
            out[signal] = {"direction": direction, "auroc": auroc(oriented, [w for _, w in pairs]), "n": len(pairs)}
    return out


def write_card(out_dir: Path, card: dict) -> Path:
    """Validate `card` against the contract and write it (the only writer of report_card.json)."""
    return ReportCard.model_validate(card).write(out_dir)


def load_card(path: str | Path) -> ReportCard:
    return ReportCard.load(path)
