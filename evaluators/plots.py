"""The report's PNG plots (matplotlib, Agg backend: no display needed).

Every plot puts in-domain and cross-domain side by side (one panel per
domain, shared axes), gives each method one colour and marker throughout the
report (random: grey, dashed), encodes the pruning ratio by marker shape and
size, and keeps its legend outside the data, below the panels.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
from matplotlib.lines import Line2D  # noqa: E402

from evaluators.report_data import Variant, domain_mean, reliability, utility  # noqa: E402

COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#bcbd22")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "h")
RANDOM_COLOUR = "#7f7f7f"
ROLE = {"biomedical": "in-domain", "general": "cross-domain"}


def domain_title(domain: str, domains: list[str]) -> str:
    role = ROLE.get(domain) if domain in ROLE and set(domains) >= {"biomedical", "general"} else None
    return f"{domain} ({role})" if role else domain


def methods_of(variants: list[Variant]) -> list[str]:
    return sorted({v.method for v in variants if v.method != "base"}, key=lambda m: (m == "random", m))


def method_style(method: str, methods: list[str]) -> dict:
    if method == "random":
        return {"color": RANDOM_COLOUR, "linestyle": "--", "marker": "x"}
    index = [m for m in methods if m != "random"].index(method)
    return {"color": COLOURS[index % len(COLOURS)], "linestyle": "-", "marker": MARKERS[index % len(MARKERS)]}


def ratio_markers(variants: list[Variant]) -> dict[float, tuple[str, float]]:
    """Marker shape and size per pruning ratio (larger = more pruned)."""
    ratios = sorted({v.ratio for v in variants if v.method != "base"})
    return {r: (MARKERS[i % len(MARKERS)], 40 + 50 * i) for i, r in enumerate(ratios)}


def _panels(count: int, width: float = 5.2, height: float = 3.8):
    fig, axes = plt.subplots(
        1, max(1, count), figsize=(width * max(1, count), height), sharex=True, sharey=True, squeeze=False
    )
    return fig, list(axes[0])


def _save(fig, path: Path, handles, ncol: int) -> Path:
    if handles:
        fig.legend(
            handles=handles,
            loc="lower center",
            ncol=min(ncol, len(handles)),
            fontsize=8,
            frameon=False,
            bbox_to_anchor=(0.5, 0.0),
        )
        rows = -(-len(handles) // max(1, ncol))
        fig.tight_layout(rect=(0, 0.06 + 0.05 * rows, 1, 1))
    else:
        fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def metric_vs_ratio(variants: list[Variant], metric: str, domains: list[str], path: Path) -> Path:
    """Small multiples, one panel per domain: one line per method of the metric's domain mean against the
    ratio; every line starts at the base (ratio 0), so each curve shows the loss from the base."""
    fig, axes = _panels(len(domains))
    bases = [v for v in variants if v.method == "base"]
    methods = methods_of(variants)
    for ax, domain in zip(axes, domains):
        for method in methods:
            members = sorted(bases + [v for v in variants if v.method == method], key=lambda v: v.ratio)
            points = [(v.ratio, domain_mean(v.card, metric, domain)) for v in members]
            points = [(x, y) for x, y in points if y is not None]
            if points:
                ax.plot(
                    [x for x, _ in points],
                    [y for _, y in points],
                    **method_style(method, methods),
                    markersize=5,
                    linewidth=1.6,
                )
        base_points = [domain_mean(v.card, metric, domain) for v in bases]
        if not methods and base_points and base_points[0] is not None:
            ax.scatter([0.0], [base_points[0]], marker="*", s=120, color="black")
        ax.set_title(domain_title(domain, domains), fontsize=10)
        ax.set_xlabel("pruning ratio (0 = base)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(metric)
    fig.suptitle(f"{metric} vs pruning ratio", fontsize=11)
    handles = [Line2D([], [], label=m, **method_style(m, methods)) for m in methods]
    return _save(fig, path, handles, ncol=4)


def _recovery(value, base):
    return value / base if value is not None and base not in (None, 0) else None


def in_vs_cross_domain(variants: list[Variant], domains: list[str], path: Path) -> Path:
    """Each pruned variant's utility recovery in-domain (x) against cross-domain (y); below the diagonal
    means cross-domain lost more. Colour: method; marker: ratio. Falls back to raw utility per domain when
    the report has no base or only one domain."""
    methods = methods_of(variants)
    markers = ratio_markers(variants)
    base = next((v for v in variants if v.method == "base"), None)
    fig, ax = plt.subplots(figsize=(6.4, 5.4))
    x_domain, y_domain = (domains + domains)[:2]
    use_recovery = base is not None and len(domains) >= 2
    for v in variants:
        if v.method == "base":
            continue
        x, y = utility(v.card, x_domain), utility(v.card, y_domain)
        if use_recovery:
            x, y = _recovery(x, utility(base.card, x_domain)), _recovery(y, utility(base.card, y_domain))
        if x is None or y is None:
            continue
        shape, size = markers[v.ratio]
        ax.scatter(
            [x],
            [y],
            marker=shape,
            s=size,
            color=method_style(v.method, methods)["color"],
            edgecolor="black",
            linewidth=0.5,
            alpha=0.85,
        )
    ax.plot([0, 1.1], [0, 1.1], color="black", linewidth=0.8, linestyle=":")
    what = "utility recovery (variant / base)" if use_recovery else "utility (exact match)"
    ax.set_xlabel(f"{domain_title(x_domain, domains)}: {what}")
    ax.set_ylabel(f"{domain_title(y_domain, domains)}: {what}")
    ax.set_xlim(-0.05, 1.12)
    ax.set_ylim(-0.05, 1.12)
    ax.grid(alpha=0.3)
    ax.set_title("in-domain vs cross-domain (below the dotted line: cross-domain lost more)", fontsize=10)
    return _save(fig, path, _method_and_ratio_handles(methods, markers), ncol=4)


def _method_and_ratio_handles(methods, markers) -> list:
    handles = [
        Line2D([], [], color=method_style(m, methods)["color"], marker="o", linestyle="", label=m) for m in methods
    ]
    handles += [
        Line2D(
            [],
            [],
            color="white",
            marker=shape,
            markeredgecolor="black",
            markersize=4 + size / 30,
            linestyle="",
            label=f"ratio {r:g}",
        )
        for r, (shape, size) in markers.items()
    ]
    handles.append(Line2D([], [], color="black", marker="*", markersize=11, linestyle="", label="base"))
    return handles


def utility_vs_reliability(variants: list[Variant], domains: list[str], path: Path) -> Path:
    """One panel per domain: utility (x) against reliability = 1 - hallucination rate (y). Colour: method;
    marker shape and size: pruning ratio; star: base. Up and right is better."""
    methods = methods_of(variants)
    markers = ratio_markers(variants)
    fig, axes = _panels(len(domains), width=5.0, height=4.4)
    for ax, domain in zip(axes, domains):
        for v in variants:
            x, y = utility(v.card, domain), reliability(v.card, domain)
            if x is None or y is None:
                continue
            if v.method == "base":
                ax.scatter([x], [y], marker="*", s=220, color="black", zorder=3)
                continue
            shape, size = markers[v.ratio]
            ax.scatter(
                [x],
                [y],
                marker=shape,
                s=size,
                color=method_style(v.method, methods)["color"],
                edgecolor="black",
                linewidth=0.5,
                alpha=0.85,
            )
        ax.set_title(domain_title(domain, domains), fontsize=10)
        ax.set_xlabel("utility: exact match (answerable)")
        ax.set_xlim(-0.05, 1.05)
        ax.set_ylim(-0.05, 1.05)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("reliability: 1 - hallucination rate")
    fig.suptitle("utility vs reliability", fontsize=11)
    return _save(fig, path, _method_and_ratio_handles(methods, markers), ncol=6)
