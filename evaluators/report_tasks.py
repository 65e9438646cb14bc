"""Per-task tables of the report, as the study lays its results out: one table per task family
(MultiMedQA, Med-HALT, MedINST32, summaries, ...), a row per task and metric, the base's value and each
variant's value with its recovery, then the family's macro average (each task counts once) and, for
proportions, its micro average (each item counts once). Under every table: the decoding settings its
tasks were run with, and the data rows the loaders skipped.
"""

from __future__ import annotations

import html

from evaluators.metric_registry import METRICS
from evaluators.metrics.averages import macro_average, micro_average
from evaluators.report_data import Variant

FAMILIES = {
    "multimedqa": "MultiMedQA",
    "mmlu": "MMLU",
    "medhalt": "Med-HALT",
    "medinst32": "MedINST32",
    "summaries": "Summarisation",
}


def family(task_name: str, task: dict) -> str:
    prefix = task_name.split("_", 1)[0]
    return FAMILIES.get(prefix, f"{task.get('domain') or 'other'} tasks")


def _num(value, digits=3) -> str:
    return '<span class="na">n/a</span>' if value is None else f"{value:.{digits}f}"


def _ratio(value, base) -> float | None:
    return value / base if value is not None and base not in (None, 0) else None


def _cell(value, base, metric: str) -> str:
    recovery = _ratio(value, base)
    low = recovery is not None and recovery < 0.9 and METRICS.get(metric) and METRICS[metric].higher_is_better
    shown = _num(value) + (f" ({recovery:.2f})" if recovery is not None else "")
    return f'<span class="low">{shown}</span>' if low else shown


def _value(card: dict, task: str, metric: str):
    return card.get("tasks", {}).get(task, {}).get("metrics", {}).get(metric, {}).get("value")


def _rows_of(tasks: dict[str, dict]) -> list[tuple[str, str]]:
    return [(name, metric) for name, task in tasks.items() for metric in task.get("metrics", {})]


def _decoding_note(tasks: dict[str, dict]) -> str:
    settings: dict[str, list[str]] = {}
    for name, task in tasks.items():
        decoding = task.get("decoding")
        text = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in decoding.items()) if decoding else "not recorded"
        settings.setdefault(text, []).append(name)
    parts = [
        f"{html.escape(text)} ({len(names)} task{'s' if len(names) > 1 else ''})"
        if len(settings) > 1
        else html.escape(text)
        for text, names in settings.items()
    ]
    return "Decoding: " + "; ".join(parts) + "."


def _skipped_note(tasks: dict[str, dict]) -> str:
    skipped = [(name, task) for name, task in tasks.items() if task.get("n_skipped")]
    if not skipped:
        return ""
    parts = []
    for name, task in skipped:
        reasons = ", ".join(
            f"{html.escape(reason)} x{entry.get('count', 0)}" for reason, entry in (task.get("skipped") or {}).items()
        )
        parts.append(f"{html.escape(name)}: {task['n_skipped']}" + (f" ({reasons})" if reasons else ""))
    return " Skipped data rows: " + "; ".join(parts) + "."


def family_table(title: str, task_names: list[str], base: Variant | None, others: list[Variant]) -> str:
    reference = (base or others[0]).card.get("tasks", {})
    tasks = {
        name: reference.get(name) or next(v.card["tasks"][name] for v in others if name in v.card["tasks"])
        for name in task_names
    }
    columns = ([base] if base else []) + others
    head = ["task", "metric", "n"] + [html.escape(v.label) for v in columns]
    body = []
    for task, metric in _rows_of(tasks):
        base_value = _value(base.card, task, metric) if base else None
        cells = [html.escape(task), html.escape(metric), str(tasks[task].get("n", ""))]
        cells += [_num(base_value)] if base else []
        cells += [_cell(_value(v.card, task, metric), base_value, metric) for v in others]
        body.append(cells)
    order = list(METRICS)
    for metric in sorted({m for _, m in _rows_of(tasks)}, key=lambda m: order.index(m) if m in order else len(order)):
        with_metric = [t for t in task_names if metric in tasks[t].get("metrics", {})]
        if len(with_metric) < 2:
            continue
        averages = [
            (
                "macro",
                lambda card, metric=metric, with_metric=with_metric: macro_average(
                    [_value(card, t, metric) for t in with_metric]
                ),
            )
        ]
        if METRICS.get(metric) and METRICS[metric].kind == "proportion":
            averages.append(
                (
                    "micro",
                    lambda card, metric=metric, with_metric=with_metric: micro_average(
                        [_value(card, t, metric) for t in with_metric],
                        [card.get("tasks", {}).get(t, {}).get("n", 0) for t in with_metric],
                    ),
                )
            )
        for label, average in averages:
            base_value = average(base.card) if base else None
            cells = [f"<strong>{label} average</strong>", html.escape(metric), str(len(with_metric)) + " tasks"]
            cells += [_num(base_value)] if base else []
            cells += [_cell(average(v.card), base_value, metric) for v in others]
            body.append(cells)
    rows = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in body)
    heading = "".join(f"<th>{h}</th>" for h in head)
    note = _decoding_note(tasks) + _skipped_note(tasks)
    return (
        f"<h4>{html.escape(title)}</h4><table><thead><tr>{heading}</tr></thead><tbody>{rows}</tbody></table>"
        f'<p class="decoding">{note}</p>'
    )


def task_tables(variants: list[Variant]) -> str:
    """Every family's table; values are the variant's, in brackets its recovery (variant / base)."""
    if not variants:
        return ""
    base = next((v for v in variants if v.method == "base"), None)
    others = [v for v in variants if v is not base] or ([base] if base else [])
    if base and others == [base]:
        others, base = [base], None
    families: dict[str, list[str]] = {}
    for v in variants:
        for name, task in v.card.get("tasks", {}).items():
            names = families.setdefault(family(name, task), [])
            if name not in names:
                names.append(name)
    intro = (
        "<p>Per task and family: the base's value, each variant's value and (in brackets) its recovery "
        "against the base; macro averages weigh tasks equally, micro averages weigh items.</p>"
    )
    tables = "".join(family_table(title, names, base, others) for title, names in families.items())
    return f"<h3>Per task, by family</h3>{intro}{tables}<h3>Every metric with its 95% interval</h3>"
