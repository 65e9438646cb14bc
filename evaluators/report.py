"""`render_report`: report cards -> one self-contained HTML page plus the PNG plots beside it.

The page explains what each number means, so a reader who ran nothing can
follow it: which variant to ship per ratio and what it costs, the variants,
metric-vs-ratio small multiples (a panel per domain, a line per method),
in-domain vs cross-domain recovery, utility vs reliability with the ratio
encoded, recovery against the base, the certificates per gate domain (with and
without the base cross-check), the calibrated flag thresholds, and
every metric with its 95% interval.
Images are embedded (base64) so the HTML file alone is the whole report.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

from evaluators.card import load_card
from evaluators.metric_registry import METRICS
from evaluators.plot_risk_coverage import risk_coverage_plot
from evaluators.plots import in_vs_cross_domain, metric_vs_ratio, utility_vs_reliability
from evaluators.report_data import domains, metrics_present, variants
from evaluators.report_html import (
    PAGE,
    flag_table,
    metric_table,
    recommendation_table,
    recovery_table,
    signal_table,
    variant_table,
)
from evaluators.report_reliability import certificate_table
from moeprune.errors import UserError


def render_report(card_paths, out_dir) -> Path:
    """Render the report for `card_paths` into out_dir; returns the path of index.html."""
    if not card_paths:
        raise UserError("no report cards given; pass one or more report_card.json files")
    # Validated by the typed model; the page code reads the plain JSON form.
    cards = [load_card(path).as_dict() for path in card_paths]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    members, found_domains = variants(cards), domains(cards)
    figures = []
    for metric in metrics_present(cards):
        hint = f" ({METRICS[metric].direction})"
        path = metric_vs_ratio(members, metric, found_domains, out / f"ratio_{metric}.png")
        figures.append((f"{metric} vs pruning ratio{hint}", path))
    figures.append(
        ("Utility in-domain vs cross-domain", in_vs_cross_domain(members, found_domains, out / "domains.png"))
    )
    figures.append(
        ("Utility vs reliability", utility_vs_reliability(members, found_domains, out / "utility_vs_reliability.png"))
    )
    curves = risk_coverage_plot(members, out / "risk_coverage.png")
    if curves is not None:
        figures.append(("Risk-coverage of p_wrong per gate domain (certifying half)", curves))
    images = "\n".join(
        f'<figure><img alt="{html.escape(title)}" src="data:image/png;base64,'
        f'{base64.b64encode(path.read_bytes()).decode()}"><figcaption>{html.escape(title)} '
        f"({path.name})</figcaption></figure>"
        for title, path in figures
    )
    page = PAGE.format(
        recommendation=recommendation_table(members, found_domains),
        variants=variant_table(members),
        figures=images,
        recovery=recovery_table(members),
        flags=flag_table(members),
        signals=signal_table(members),
        metrics=metric_table(members),
        certificates=certificate_table(members),
    )
    index = out / "index.html"
    index.write_text(page, encoding="utf-8")
    return index
