"""The report's risk-coverage plot: per gate domain, each variant's error among served answers against the share
served (lowest p_wrong first, on its certifying half), with the certified alpha as a line and each certified
operating point marked. Lower and further right is better."""

from __future__ import annotations

from pathlib import Path

from matplotlib.lines import Line2D

from evaluators.plots import COLOURS, _panels, _save
from evaluators.report_data import Variant


def risk_coverage_domains(variants: list[Variant]) -> list[str]:
    found = {name for v in variants for name in ((v.card.get("reliability") or {}).get("domains") or {})}
    return [d for d in ("in_domain", "cross_domain", "all") if d in found] + sorted(
        found - {"in_domain", "cross_domain", "all"}
    )


def risk_coverage_plot(variants: list[Variant], path: Path) -> Path | None:
    """None when no card has a risk-coverage curve (nothing to plot)."""
    with_curves = [
        v
        for v in variants
        if any(d.get("risk_coverage") for d in ((v.card.get("reliability") or {}).get("domains") or {}).values())
    ]
    if not with_curves:
        return None
    domains = risk_coverage_domains(with_curves)
    fig, axes = _panels(len(domains))
    handles = []
    for index, v in enumerate(with_curves):
        colour = COLOURS[index % len(COLOURS)]
        section = v.card["reliability"]
        for ax, name in zip(axes, domains):
            domain = section["domains"].get(name) or {}
            curve = domain.get("risk_coverage") or []
            if curve:
                ax.plot([c for c, _ in curve], [r for _, r in curve], color=colour, linewidth=1.5)
            certificate = domain.get("certificate") or {}
            if certificate.get("status") == "certified":
                ax.plot([certificate["coverage"]], [certificate["realised_error"]], marker="o", color=colour)
        handles.append(Line2D([], [], color=colour, label=v.label))
    for ax, name in zip(axes, domains):
        alphas = {(v.card["reliability"] or {}).get("alpha") for v in with_curves}
        for alpha in alphas:
            ax.axhline(alpha, color="#555", linestyle=":", linewidth=1)
        ax.set_title(name)
        ax.set_xlabel("coverage (share served unflagged)")
        ax.set_xlim(0, 1.02)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("error among served")
    handles.append(Line2D([], [], color="#555", linestyle=":", label="alpha"))
    handles.append(Line2D([], [], color="#555", marker="o", linestyle="", label="certified point"))
    return _save(fig, path, handles, ncol=4)
