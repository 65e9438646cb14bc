"""The report's PNG plots (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)

from evaluators.report_data import Variant, domain_mean, reliability, utility  # noqa: E402

DOMAIN_STYLE = {"biomedical": "-", "general": "--"}


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def metric_vs_ratio(variants: list[Variant], metric: str, domains: list[str], path: Path) -> Path:
    """One line per (method, domain): the metric's mean over the domain's tasks against the ratio.

    The base (ratio 0) starts every method's line, so each curve shows the loss from the base.
    """
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    bases = [v for v in variants if v.method == "base"]
    methods = sorted({v.method for v in variants if v.method != "base"}) or ["base"]
    for method in methods:
        pruned = [v for v in variants if v.method == method and v.method != "base"]
        members = sorted(bases + pruned, key=lambda v: v.ratio)
        for domain in domains:
            points = [(v.ratio, domain_mean(v.card, metric, domain)) for v in members]
            points = [(x, y) for x, y in points if y is not None]
            if points:
                ax.plot([x for x, _ in points], [y for _, y in points], DOMAIN_STYLE.get(domain, ":"),
                        marker="o", label=f"{method} / {domain}")
    ax.set_xlabel("pruning ratio (share of experts removed; 0 = base)")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} vs pruning ratio")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def in_vs_cross_domain(variants: list[Variant], domains: list[str], path: Path) -> Path:
    """Grouped bars: utility (exact match on answerable tasks) per variant and domain."""
    fig, ax = plt.subplots(figsize=(max(6.4, 1.2 * len(variants)), 4.2))
    width = 0.8 / max(1, len(domains))
    colours = ["tab:blue", "tab:orange", "tab:green", "tab:red"]
    for i, domain in enumerate(domains):
        values = [utility(v.card, domain) for v in variants]
        xs = [j + i * width for j in range(len(variants))]
        bars = ax.bar(xs, [v or 0.0 for v in values], width, label=domain, color=colours[i % len(colours)])
        # Print the value on each bar (n/a where the variant has no task of that domain).
        ax.bar_label(bars, labels=["n/a" if v is None else f"{v:.2f}" for v in values], fontsize=7)
    ax.set_xticks([j + width * (len(domains) - 1) / 2 for j in range(len(variants))])
    ax.set_xticklabels([v.label for v in variants], rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("exact match (answerable tasks)")
    ax.set_ylim(0, 1.18)  # head room for the value labels and the legend
    ax.set_title("in-domain (biomedical) vs cross-domain (general)")
    ax.legend(loc="upper right", ncol=len(domains))
    return _save(fig, path)


def utility_vs_reliability(variants: list[Variant], domains: list[str], path: Path) -> Path:
    """Scatter: utility (x) against reliability = 1 - hallucination rate (y), per variant and domain."""
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    markers = {"biomedical": "o", "general": "s"}
    colours = plt.get_cmap("viridis")
    for i, variant in enumerate(variants):
        colour = colours(i / max(1, len(variants) - 1))
        for domain in domains:
            x, y = utility(variant.card, domain), reliability(variant.card, domain)
            if x is None or y is None:
                continue
            ax.scatter([x], [y], color=colour, marker=markers.get(domain, "^"), s=60, edgecolor="black")
            ax.annotate(f"{variant.name} ({domain[:3]})", (x, y), fontsize=7, xytext=(4, 4),
                        textcoords="offset points")
    ax.set_xlabel("utility: exact match on answerable tasks")
    ax.set_ylabel("reliability: 1 - hallucination rate")
    ax.set_xlim(-0.05, 1.05)
    ax.set_ylim(-0.05, 1.05)
    ax.grid(alpha=0.3)
    ax.set_title("utility vs reliability (circle: biomedical, square: general)")
    return _save(fig, path)
