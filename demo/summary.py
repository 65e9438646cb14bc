"""The demo's results as one row per variant, read back from the report cards."""

from __future__ import annotations

from pathlib import Path

from evaluators.gate_quality import gate_warnings
from moeprune.formats.report_card import ReportCard


def _metric(card: ReportCard, task: str, metric: str) -> float | None:
    result = card.tasks.get(task)
    entry = result.metrics.get(metric) if result is not None else None
    return entry.value if entry is not None else None


def _mean(values) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def card_row(name: str, card_path: Path) -> dict:
    card = ReportCard.load(card_path)
    pruning = card.pruning
    return {
        "variant": name,
        "method": pruning.method if pruning else None,
        "ratio": pruning.ratio if pruning else None,
        "bio_acc": _metric(card, "bio_qa", "exact_match"),
        "general_acc": _metric(card, "general_qa", "exact_match"),
        "bio_refusal": _metric(card, "bio_fake", "refusal_rate"),
        "general_refusal": _metric(card, "general_fake", "refusal_rate"),
        "refusal": _mean([_metric(card, t, "refusal_rate") for t in ("bio_fake", "general_fake")]),
        "hallucination": _mean([_metric(card, t, "hallucination_rate") for t in ("bio_fake", "general_fake")]),
        "nota": _mean([_metric(card, t, "nota_accuracy") for t in ("bio_nota", "general_nota")]),
        "bytes_saved": (pruning.bytes_saved if pruning else None) or 0,
        "flags": {flag: spec.auroc for flag, spec in card.flags.items()},
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
    head = (
        "| variant | bio acc % | general acc % | refusal on made-up % | hallucination on made-up % "
        "| NOTA acc % | bio recovery | general recovery | bytes saved |"
    )
    lines = [head, "|" + "---|" * 9]
    for r in rows:
        recovery = [("-" if r[k] is None else f"{r[k]:.2f}") for k in ("bio_acc_recovery", "general_acc_recovery")]
        lines.append(
            f"| {r['variant']} | {_pct(r['bio_acc'])} | {_pct(r['general_acc'])} | {_pct(r['refusal'])} "
            f"| {_pct(r['hallucination'])} | {_pct(r['nota'])} | {recovery[0]} | {recovery[1]} "
            f"| {r['bytes_saved']:,} |"
        )
    return "\n".join(lines)


def certificate_lines(cards: dict[str, Path]) -> list[str]:
    """One line per variant and gate domain: what its flags promise (README "Reliability flags")."""
    lines = []
    for name, path in cards.items():
        card = ReportCard.load(path)
        section = card.reliability
        if section is None:
            continue
        check = "base check on" if section.base_check else "no base check"
        for domain, entry in section.domains.items():
            cert = entry.certificate
            auroc = (entry.quality.get("p_wrong") or {}).get("auroc")
            separation = (
                f"p_wrong AUROC {auroc.value:.2f}"
                if auroc is not None and auroc.value is not None
                else "p_wrong not fitted"
            )
            if cert.status == "certified" and cert.coverage is not None and cert.error_upper is not None:
                promise = (
                    f"certified: {100 * cert.coverage:.0f}% of answers unflagged, wrong among them "
                    f"<= {100 * cert.error_upper:.1f}% (alpha {cert.alpha:g}, delta {cert.delta:g})"
                )
            else:
                promise = "uncertified: every answer flagged"
            lines.append(f"{name} {domain}: {promise}; {separation}, {entry.n} answers, {check}")
        lines += [f"{name} {warning}" for warning in (gate_warnings(card.domain_gate) if card.domain_gate else [])]
    return lines
