"""The report's certified-reliability table: each variant's certificate per gate domain, with and without the
base cross-check side by side (docs/reliability.md says what a certificate promises)."""

from __future__ import annotations

import html

from evaluators.report_data import Variant
from evaluators.report_html import fmt, table

INTRO = """<p>Per variant and gate domain (<em>in_domain</em> / <em>cross_domain</em> by the variant's domain gate,
<em>all</em> without one): with probability at least 1 - delta, the error rate among answers served without a
flag (p_wrong at or below the certified threshold; abstentions apart) is at most alpha, for traffic like the
evaluation set. <em>Coverage</em>: share of the certifying half served unflagged; <em>error (bound)</em>:
its realised error and the one-sided upper bound. <em>uncertified</em>: every answer is flagged. No flag does
not mean correct. The right-hand columns are the same fit without the base cross-check
(<code>base_mean_logprob</code>), which costs one prefill on the base per answer.</p>"""


def _auroc(domain: dict | None) -> str:
    entry = ((domain or {}).get("quality") or {}).get("p_wrong", {}).get("auroc")
    if not entry or entry.get("value") is None:
        return fmt(None)
    ci = entry.get("ci95")
    return fmt(entry["value"]) + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")


def _certificate(domain: dict | None) -> list[str]:
    if domain is None:
        return [fmt(None)] * 3
    cert = domain["certificate"]
    if cert["status"] != "certified":
        return [
            f'<span class="low" title="{html.escape(cert.get("reason") or "")}">uncertified</span>',
            fmt(None),
            f'<span class="na">{html.escape(cert.get("reason") or "")}</span>',
        ]
    error = f"{fmt(cert['realised_error'])} (&le; {fmt(cert['error_upper'])})"
    return ['<span class="ok">certified</span>', fmt(cert["coverage"]), error]


def certificate_table(variants: list[Variant]) -> str:
    rows, notes = [], []
    for v in variants:
        section = v.card.get("reliability")
        if not section:
            notes.append(f"{html.escape(v.label)}: no reliability section (no labelled answers, or an older card)")
            continue
        if section.get("base_check_off"):
            notes.append(f"{html.escape(v.label)}: base cross-check {html.escape(section['base_check_off'])}")
        without = section.get("without_base_check") or {}
        for name, domain in section["domains"].items():
            other = without.get(name)
            rows.append(
                [
                    html.escape(v.label),
                    html.escape(name),
                    f"{domain['certificate']['alpha']:g} / {domain['certificate']['delta']:g}",
                    *_certificate(domain),
                    f"{domain['n']} ({domain['n_wrong']}, {domain['n_abstained']})",
                    _auroc(domain),
                    *(_certificate(other)[:2] if without else [fmt(None)] * 2),
                    _auroc(other) if without else fmt(None),
                ]
            )
    if not rows and not notes:
        return "<p>No report card has a reliability section.</p>"
    header = [
        "variant",
        "domain",
        "alpha / delta",
        "status",
        "coverage",
        "error (bound)",
        "n (wrong, abstained)",
        "p_wrong AUROC [95% CI]",
        "no base check: status",
        "coverage",
        "p_wrong AUROC",
    ]
    listed = "".join(f"<li>{note}</li>" for note in notes)
    return INTRO + (table(header, rows) if rows else "") + (f"<ul>{listed}</ul>" if listed else "")
