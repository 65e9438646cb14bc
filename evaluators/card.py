"""The report card (docs/contracts.md `report_card.json`): assembly, pruning info, writing."""

from __future__ import annotations

import json
import math
from pathlib import Path

from evaluators.metrics.classification import auroc
from evaluators.metrics.flags import flag_quality
from evaluators.signals import FLAG_RULES
from pruning.errors import UserError

SCHEMA_VERSION = 1


def pruning_info(model_dir: str | Path | None) -> dict | None:
    """Method, ratio, experts kept/total and bytes saved from the model dir's pruning.json.

    None for an unpruned model (no pruning.json); a base model dir is fine.
    """
    if model_dir is None:
        return None
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise UserError(f"--model-dir {model_dir} is not a directory")
    manifest_path = model_dir / "pruning.json"
    if not manifest_path.exists():
        return None
    try:
        manifest = json.loads(manifest_path.read_text())
    except json.JSONDecodeError as exc:
        raise UserError(f"{manifest_path}, line {exc.lineno}: not valid JSON") from None
    kept = manifest.get("kept_experts") or {}
    kept_counts = sorted({len(v) for v in kept.values()})
    size = manifest.get("bytes") or {}
    before = (size.get("before") or {}).get("total")
    after = (size.get("after") or {}).get("total")
    return {
        "method": manifest.get("method"),
        "ratio": manifest.get("ratio"),
        # Uniform pruning keeps the same count in every layer; otherwise the mean.
        "experts_kept": kept_counts[0] if len(kept_counts) == 1 else
        (sum(len(v) for v in kept.values()) / len(kept) if kept else None),
        "experts_total": manifest.get("experts_per_layer_before"),
        "bytes_saved": before - after if before is not None and after is not None else None,
    }


def flags_section(records: list[dict], target_precision: float, seed: int) -> tuple[dict, dict]:
    """(flags, unavailable): per flag rule, its calibrated threshold and quality on MC answers."""
    flags, missing = {}, {}
    answered = [r for r in records if "correct" in r]
    for name, rule in FLAG_RULES.items():
        values = [r["signals"].get(rule.signal) for r in answered]
        present = [v for v in values if v is not None and not math.isnan(v)]
        if not answered:
            missing[name] = "no multiple-choice answers to calibrate on"
            continue
        if not present:
            missing[name] = ("no base endpoint given (--base-endpoint)" if rule.signal == "base_mean_logprob"
                             else "the endpoint returned no token logprobs")
            continue
        quality = flag_quality(values, [not r["correct"] for r in answered], rule.direction, target_precision,
                               seed)
        if quality is None or quality["threshold"] is None:
            missing[name] = "not enough scored answers to choose a threshold"
            continue
        flags[name] = {"signal": rule.signal, "direction": rule.direction, **quality,
                       "target_precision": target_precision}
    return flags, missing


# Every per-response signal with the direction in which it points to a wrong answer,
# including those no flag uses (low_conf_share), so their quality is on record too.
SIGNAL_DIRECTIONS = {"mean_logprob": "below", "min_logprob": "below", "mean_entropy": "above",
                     "low_conf_share": "above", "base_mean_logprob": "below"}


def signal_quality(records: list[dict]) -> dict:
    """AUROC of each signal for separating wrong from right multiple-choice answers."""
    answered = [r for r in records if "correct" in r]
    out = {}
    for signal, direction in SIGNAL_DIRECTIONS.items():
        pairs = [(r["signals"].get(signal), not r["correct"]) for r in answered]
        pairs = [(v, w) for v, w in pairs if v is not None and not math.isnan(v)]
        if pairs:
            oriented = [-v if direction == "below" else v for v, _ in pairs]
            out[signal] = {"direction": direction, "auroc": auroc(oriented, [w for _, w in pairs]),
                           "n": len(pairs)}
    return out


def write_card(out_dir: Path, card: dict) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "report_card.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(card, indent=2, allow_nan=False) + "\n")
    tmp.replace(path)
    return path


def load_card(path: str | Path) -> dict:
    path = Path(path)
    if path.is_dir():
        path = path / "report_card.json"
    if not path.is_file():
        raise UserError(f"report card {path} does not exist; pass the report_card.json that moeprune eval wrote")
    try:
        card = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise UserError(f"report card {path}, line {exc.lineno}: not valid JSON") from None
    if not isinstance(card, dict) or card.get("schema_version") != SCHEMA_VERSION or "tasks" not in card:
        raise UserError(f"report card {path} is not a schema-version-{SCHEMA_VERSION} report card")
    return card
