"""The demo's results as one row per variant, read back from the report cards."""

from __future__ import annotations

import json
from pathlib import Path


def _metric(card: dict, task: str, metric: str) -> float | None:
    return (((card.get("tasks") or {}).get(task) or {}).get("metrics") or {}).get(metric, {}).get("value")


def _mean(values) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def card_row(name: str, card_path: Path) -> dict:
    card = json.loads(Path(card_path).read_text())
    pruning = card.get("pruning") or {}
    return {
        "variant": name,
        "method": pruning.get("method"),
        "ratio": pruning.get("ratio"),
        "bio_acc": _metric(card, "bio_qa", "exact_match"),
        "general_acc": _metric(card, "general_qa", "exact_match"),
        "bio_refusal": _metric(card, "bio_fake", "refusal_rate"),
        "general_refusal": _metric(card, "general_fake", "refusal_rate"),
        "refusal": _mean([_metric(card, t, "refusal_rate") for t in ("bio_fake", "general_fake")]),
        "hallucination": _mean([_metric(card, t, "hallucination_rate") for t in ("bio_fake", "general_fake")]),
        "nota": _mean([_metric(card, t, "nota_accuracy") for t in ("bio_nota", "general_nota")]),
        "bytes_saved": pruning.get("bytes_saved") or 0,
        "flags": {flag: spec.get("auroc") for flag, spec in (card.get("flags") or {}).items()},
    }


def with_recovery(rows: list[dict]) -> list[dict]:
    base = next((r for r in rows if r["variant"] == "base"), None)
    for row in rows:
        for key in ("bio_acc", "general_acc"):
            base_value = base and base[key]
            row[f"{key}_recovery"] = (row[key] / base_value) if base_value and row[key] is not None else None
    return rows


def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def markdown_table(rows: list[dict]) -> str:
    head = ("| variant | bio acc % | general acc % | refusal on made-up % | hallucination on made-up % "
            "| NOTA acc % | bio recovery | general recovery | bytes saved |")
    lines = [head, "|" + "---|" * 9]
    for r in rows:
        recovery = [("-" if r[k] is None else f"{r[k]:.2f}") for k in ("bio_acc_recovery", "general_acc_recovery")]
        lines.append(f"| {r['variant']} | {_pct(r['bio_acc'])} | {_pct(r['general_acc'])} | {_pct(r['refusal'])} "
                     f"| {_pct(r['hallucination'])} | {_pct(r['nota'])} | {recovery[0]} | {recovery[1]} "
                     f"| {r['bytes_saved']:,} |")
    return "\n".join(lines)
