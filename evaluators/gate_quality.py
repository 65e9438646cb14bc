"""How well a variant's domain gate separates its tasks' in-domain prompts from the cross-domain ones.

Positives are the items of tasks whose domain is the variant's own (`in_domain`,
default: biomedical), negatives those of every other domain. The threshold is
the highest one that still passes `recall` of the in-domain items (the
gateway's `guard.domain_gate` reads it from the card), and the card records
what share of cross-domain items it then sends to the fallback.
"""

from __future__ import annotations

import math
from pathlib import Path

from evaluators.items import GenItem, MCItem, SummaryItem
from evaluators.metrics.classification import auroc
from evaluators.prompts import render_mc_prompt
from moeprune.errors import UserError
from moeprune.formats.domain_gate import DomainGate, threshold_for_recall


def item_text(item) -> str:
    """The text the gateway's gate scores for an item: the user turn eval sends (the contract MC prompt,
    options included; a summary's source; a generation's fields)."""
    if isinstance(item, MCItem):
        return render_mc_prompt(item.question, item.options)
    if isinstance(item, SummaryItem):
        return item.source
    if isinstance(item, GenItem):
        return "\n".join(str(value) for value in item.fields.values())
    return str(item)


def gate_quality(
    gate: DomainGate, loaded: list[tuple[object, list]], recall: float, in_domain: str = "biomedical"
) -> dict:
    """The card's `domain_gate` section for `loaded` = [(task, items), ...]."""
    scores, positives = [], []
    for task, items in loaded:
        if task.domain is None:
            continue
        for item in items:
            scores.append(gate.score(item_text(item)))
            positives.append(task.domain == in_domain)
    inside = [s for s, p in zip(scores, positives) if p]
    outside = [s for s, p in zip(scores, positives) if not p]
    if not inside or not outside:
        raise UserError(
            f"the gate's AUROC needs tasks of the {in_domain} domain and of another domain; "
            f"got {len(inside)} in-domain and {len(outside)} cross-domain items (add e.g. the "
            "general suite)",
            param="gate_recall",
        )
    # Rounded down, so the rounded threshold still passes the in-domain item that set it.
    threshold = math.floor(threshold_for_recall(inside, recall) * 1e6) / 1e6
    return {
        "in_domain": in_domain,
        "n_in_domain": len(inside),
        "n_cross_domain": len(outside),
        "auroc": round(auroc(scores, positives), 6),
        "target_recall": recall,
        "threshold": threshold,
        "recall": round(sum(s >= threshold for s in inside) / len(inside), 6),
        "cross_domain_fallback_rate": round(sum(s < threshold for s in outside) / len(outside), 6),
        "per_task": task_shares(gate, threshold, loaded),
    }


def task_shares(gate: DomainGate, threshold: float, loaded: list[tuple[object, list]]) -> dict[str, dict]:
    """Per task: its domain, its items, and the share of them the gate passes as in-domain at `threshold`.

    A threshold fits the tasks it was chosen on; these shares show how it treats each task, including tasks
    it was not chosen on (another prompt form, another source), which is where a gate that learned the form
    of its training texts instead of their domain shows (`gate_warnings`)."""
    out = {}
    for task, items in loaded:
        if task.domain is None or not items:
            continue
        passed = sum(gate.score(item_text(item)) >= threshold for item in items)
        out[task.name] = {"domain": task.domain, "n": len(items), "in_domain_share": round(passed / len(items), 6)}
    return out


# An in-domain task whose items mostly fail the gate is served as cross-domain: worth a line, never an error.
LOW_SHARE = 0.5


def gate_warnings(section) -> list[str]:
    """One line per task of the gate's own domain that it mostly sends cross-domain (a DomainGateQuality)."""
    return [
        f"domain gate: only {share.in_domain_share:.0%} of task {name}'s {share.n} {share.domain} items pass "
        f"its threshold {section.threshold:g}, so the gateway treats such prompts as cross-domain; if the task "
        "asks in another form than the gate's training texts, refit the gate with a reference in the same forms "
        "(docs/gateway.md, Domain gate)"
        for name, share in section.per_task.items()
        if share.domain == section.in_domain and share.in_domain_share < LOW_SHARE
    ]


def load_eval_gate(gate_path, model_dir, recall: float) -> DomainGate:
    """The gate `moeprune eval --gate-recall` scores: --gate FILE, else the one in --model-dir."""
    if not 0 < recall <= 1:
        raise UserError(f"gate recall {recall} must be in (0, 1], e.g. 0.95", param="gate_recall")
    if gate_path is None and model_dir is None:
        raise UserError(
            "--gate-recall needs the variant's domain gate: pass --model-dir (holding domain_gate.json) or --gate FILE",
            param="gate_recall",
        )
    return DomainGate.load(gate_path or model_dir)


def add_gate_quality(card_path, gate: DomainGate, tasks, recall: float, in_domain: str = "biomedical", also=()):
    """Rewrite the report card at `card_path` with its `domain_gate` section for `tasks` (the threshold is
    chosen on them); `also`: more tasks whose in-domain shares are reported at that threshold."""
    from moeprune.formats.report_card import DomainGateQuality, ReportCard

    section = gate_quality(gate, [(task, task.load()) for task in tasks], recall, in_domain)
    chosen_on = {task.name for task in tasks}
    extra = [(task, task.load()) for task in also if task.name not in chosen_on]
    section["per_task"].update(task_shares(gate, section["threshold"], extra))
    card = ReportCard.load(card_path)
    return card.model_copy(update={"domain_gate": DomainGateQuality(**section)}).write(Path(card_path).parent)
