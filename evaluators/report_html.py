"""HTML pieces of the report: the page template and its tables."""

from __future__ import annotations

import html

from evaluators.metric_registry import higher_is_better
from evaluators.report_data import Variant, base_name, base_variant, recommendations, recovery_of
from evaluators.report_tasks import task_tables

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>moe-prune-serve evaluation report</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body {{ font-family: system-ui, sans-serif; max-width: 1400px; margin: 1.5em auto; padding: 0 1em; color: #222;
       line-height: 1.45; }}
.scroll {{ overflow-x: auto; max-width: 100%; }}
table {{ border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }}
th, td {{ border: 1px solid #ccc; padding: 4px 8px; text-align: right; }}
th:first-child, td:first-child {{ text-align: left; }}
.figures {{ display: grid; grid-template-columns: repeat(auto-fit, minmax(min(100%, 620px), 1fr)); gap: 1em; }}
figure {{ margin: 0; }} img {{ width: 100%; height: auto; }} figcaption {{ font-size: 0.85em; color: #555; }}
.na {{ color: #999; }} .low {{ background: #fde2e2; }} .ok {{ background: #e3f6e3; }}
@media (max-width: 600px) {{ body {{ margin: 0.5em auto; }} table {{ font-size: 0.8em; }}
  th, td {{ padding: 3px 4px; }} }}
</style></head><body>
<h1>Pruned MoE variants: utility and factual reliability</h1>
<p>Each variant is a Mixture-of-Experts model with a share of its experts removed (the <em>pruning
ratio</em>) by a <em>method</em>; the <em>base</em> is the unpruned model. Every variant answered the
same questions through its OpenAI-compatible endpoint. <strong>Utility</strong> is how often the answer
is right (exact match). <strong>Reliability</strong> is how rarely it is confidently wrong: the
<em>hallucination rate</em> counts wrong answers that did not abstain; on made-up ("fake") questions the
right answer is to say "I don't know" (<em>refusal rate</em>). <em>ECE</em> and <em>Brier</em> measure
how well the model's option probabilities match its accuracy (lower is better). <em>Biomedical</em> is
the calibration domain of the pruning (in-domain); <em>general</em> is cross-domain.
Intervals are 95% (Wilson for proportions, bootstrap otherwise).</p>
<h2 id="recommendation">Which variant to ship</h2>
<p>Per pruning ratio, the data-driven variant with the highest in-domain utility (ties: lower
hallucination, then higher cross-domain utility), its utility recovery against the base in-domain and
cross-domain (variant / base, with the variant's 95% interval divided by the base value), the change of
its hallucination rate against the base in percentage points (95% interval), and the memory it saves.</p>
{recommendation}
<h2>Variants</h2>{variants}
<h2>Plots</h2><div class="figures">{figures}</div>
<h2>Recovery against the base</h2>
<p>Variant value / base value per task and metric (1.0 = as good as the base; for hallucination rate,
ECE and Brier, above 1 means worse). Cells under 0.9 for a higher-is-better metric are shaded.</p>
{recovery}
<h2 id="certificates">Certified reliability</h2>
{certificates}
<h2>Reliability flags</h2>
<p>The gateway flags responses whose signal crosses the threshold. Thresholds were chosen on one half of
the answers to reach the target precision (share of flagged answers that are wrong); precision and
recall were measured on the other half. AUROC: how well the signal separates wrong from right answers
(0.5 = chance). Base rate: share of answers flagged.</p>
{flags}
<p>AUROC of every per-response signal, including those no flag uses:</p>
{signals}
<h2>All metrics</h2>{metrics}
</body></html>
"""


def fmt(value, digits: int = 3) -> str:
    if value is None:
        return '<span class="na">n/a</span>'
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return html.escape(str(value))


def table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def variant_table(variants: list[Variant]) -> str:
    rows = []
    for v in variants:
        pruning = v.card.get("pruning") or {}
        rows.append(
            [
                html.escape(v.name),
                html.escape(v.method),
                fmt(v.ratio, 3),
                fmt(pruning.get("experts_kept")),
                fmt(pruning.get("experts_total")),
                fmt(pruning.get("bytes_saved")),
                html.escape(base_name(v, variants)),
                html.escape(", ".join(v.card.get("tasks", {}))),
            ]
        )
    return table(["variant", "method", "ratio", "experts kept", "experts total", "bytes saved", "base", "tasks"], rows)


def recovery_table(variants: list[Variant]) -> str:
    base = base_variant(variants)
    columns = sorted(
        {
            (t, m)
            for v in variants
            for t, task in v.card.get("tasks", {}).items()
            for m in task.get("metrics", {})
            if recovery_of(v, base, t, m) is not None
        }
    )
    if not columns:
        return (
            "<p>No recovery values: evaluate with <code>--base-endpoint/--base-model</code>, or include the "
            "base's report card.</p>"
        )
    rows = []
    for v in variants:
        row = [html.escape(v.label)]
        for task, metric in columns:
            value = recovery_of(v, base, task, metric)
            shade = "low" if value is not None and value < 0.9 and higher_is_better(metric) else ""
            row.append(f'<span class="{shade}">{fmt(value, 2)}</span>')
        rows.append(row)
    return table(["variant", *[f"{t}: {m}" for t, m in columns]], rows)


def _interval(triple, scale: float = 1.0, digits: int = 2, signed: bool = False) -> str:
    if triple is None or triple[0] is None:
        return fmt(None)
    sign = "+" if signed else ""
    text = f"{scale * triple[0]:{sign}.{digits}f}"
    if triple[1] is not None and triple[2] is not None:
        text += f" [{scale * triple[1]:{sign}.{digits}f}, {scale * triple[2]:{sign}.{digits}f}]"
    return text


def recommendation_table(variants: list[Variant], domains: list[str]) -> str:
    in_domain = domains[0] if domains else None
    cross = domains[1] if len(domains) > 1 else None
    rows = recommendations(variants, in_domain, cross) if in_domain else []
    if not rows:
        return "<p>No recommendation: the report needs the base's card and at least one data-driven variant.</p>"
    body = []
    for r in rows:
        name = html.escape(r["variant"]) + (
            f' <span class="na">(tied: {html.escape(", ".join(r["tied"]))})</span>' if r["tied"] else ""
        )
        kept = f"{r['experts_kept']}/{r['experts_total']} experts kept" if r["experts_kept"] is not None else ""
        saved = f"{r['bytes_saved'] / 1e6:.2f} MB" if r["bytes_saved"] is not None else fmt(None)
        body.append(
            [
                fmt(r["ratio"], 3),
                name,
                html.escape(r["method"]),
                _interval(r["in_domain"]),
                _interval(r["cross_domain"]),
                _interval(r["hallucination_change"], 100, 1, signed=True),
                f"{saved} ({kept})" if kept else saved,
            ]
        )
    return table(
        [
            "ratio",
            "best variant",
            "method",
            f"{in_domain} recovery",
            f"{cross or '-'} recovery",
            "hallucination change (points)",
            "memory saved",
        ],
        body,
    )


def flag_table(variants: list[Variant]) -> str:
    rows = []
    for v in variants:
        for name, flag in v.card.get("flags", {}).items():
            rows.append(
                [
                    html.escape(v.label),
                    html.escape(name),
                    html.escape(f"{flag['signal']} {flag['direction']}"),
                    fmt(flag.get("threshold")),
                    fmt(flag.get("auroc")),
                    fmt(flag.get("precision")),
                    fmt(flag.get("recall")),
                    fmt(flag.get("base_rate")),
                ]
            )
        for name, reason in v.card.get("flags_unavailable", {}).items():
            rows.append(
                [
                    html.escape(v.label),
                    html.escape(name),
                    f'<span class="na">{html.escape(reason)}</span>',
                    *[fmt(None)] * 5,
                ]
            )
    return table(["variant", "flag", "signal", "threshold", "AUROC", "precision", "recall", "base rate"], rows)


def metric_table(variants: list[Variant]) -> str:
    rows = []
    for v in variants:
        for task_name, task in v.card.get("tasks", {}).items():
            for name, metric in task.get("metrics", {}).items():
                ci = metric.get("ci95")
                interval = f"[{ci[0]:.3f}, {ci[1]:.3f}]" if ci else fmt(None)
                note = html.escape(metric.get("unavailable", ""))
                rows.append(
                    [
                        html.escape(v.label),
                        html.escape(task_name),
                        html.escape(task.get("domain", "")),
                        str(task.get("n", "")),
                        html.escape(name),
                        fmt(metric.get("value")),
                        interval,
                        fmt(metric.get("recovery"), 2),
                        note,
                    ]
                )
    return task_tables(variants) + table(
        ["variant", "task", "domain", "n", "metric", "value", "95% CI", "recovery", "note"], rows
    )


def signal_table(variants: list[Variant]) -> str:
    rows = [
        [
            html.escape(v.label),
            html.escape(name),
            html.escape(entry.get("direction", "")),
            fmt(entry.get("auroc")),
            fmt(entry.get("n")),
        ]
        for v in variants
        for name, entry in v.card.get("signal_quality", {}).items()
    ]
    return table(["variant", "signal", "wrong when", "AUROC", "n"], rows)
