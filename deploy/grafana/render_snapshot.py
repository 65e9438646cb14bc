"""Render the dashboard's main panels from a real Prometheus run into docs/dashboard.png.

    .venv/bin/python deploy/grafana/render_snapshot.py [--minutes 2] [--out docs/dashboard.png]

Starts the same live stack as the end-to-end test (the gateway with two tiny vLLM
CPU variants, base and 50% pruned, and Debian's Prometheus with the shipped rules),
sends traffic in rounds, then draws each main panel from Prometheus' query_range
with the panel's own expressions. Takes a few minutes; needs `prometheus` on PATH.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(Path(__file__).resolve().parent)]

from panels import Panel, main_panels  # noqa: E402

UNIT_SCALE = {"bytes": (1 / 2**20, "MiB"), "percentunit": (100, "%"), "percent": (1, "%"), "s": (1, "s"),
              "reqps": (1, "req/s"), "short": (1, "")}


def legend(template: str, labels: dict[str, str]) -> str:
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), template).strip()


def panel_series(stack, panel: Panel, start: float, end: float, step: float) -> list[tuple[str, list, list]]:
    from testkit.promql import substitute

    lines = []
    for query in panel.queries:
        answer = stack.query_range(substitute(query.expr), start, end, step)
        if answer["status"] != "success":
            raise RuntimeError(f"{panel.title}: {answer.get('error')}")
        for series in answer["data"]["result"]:
            times = [float(t) - start for t, _ in series["values"]]
            points = [float(v) for _, v in series["values"]]
            lines.append((legend(query.legend, series["metric"]), times, points))
    return lines


def draw(panels_data: list[tuple[Panel, list]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = 2
    rows = (len(panels_data) + columns - 1) // columns
    figure, axes = plt.subplots(rows, columns, figsize=(14, 3.1 * rows), squeeze=False)
    for ax, (panel, lines) in zip(axes.flat, panels_data):
        scale, suffix = UNIT_SCALE.get(panel.unit, (1, panel.unit))
        ax.set_title(panel.title, fontsize=10, loc="left")
        for name, times, points in lines:
            style = "--" if name.endswith("baseline") else "-"
            ax.plot(times, [p * scale for p in points], style, label=name, linewidth=1.6)
        ax.set_ylabel(suffix)
        if panel.unit == "bytes":
            # Weights (MiB for the tiny models) and engine RSS (GiB) share the panel.
            ax.set_yscale("log")
            ax.set_ylabel(f"{suffix} (log scale)")
        ax.set_xlabel("seconds into the run", fontsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left", ncol=2)
    for ax in list(axes.flat)[len(panels_data):]:
        ax.axis("off")
    figure.suptitle("moeprune dashboard (main panels) from a live run: gateway + 2 tiny vLLM CPU variants",
                    fontsize=12)
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=90)


def main() -> int:
    from testkit.live_stack import live_stack
    from testkit.traffic import send_traffic

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=2.0, help="how long to send traffic")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "dashboard.png")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="moeprune-snapshot-") as scratch:
        began = time.time()
        with live_stack(Path(scratch)) as stack:
            print(f"stack ready in {time.time() - began:.0f}s", flush=True)
            start = time.time()
            rounds = 0
            while time.time() - start < args.minutes * 60:
                # Vary the load so the rate panels show movement.
                send_traffic(stack.gateway_url, per_variant=4 + 4 * (rounds % 3), experiment_sessions=8)
                rounds += 1
                time.sleep(2)
            time.sleep(4)
            end = time.time()
            data = [(panel, panel_series(stack, panel, start - 10, end, 2.0)) for panel in main_panels()]
        print(f"{rounds} traffic rounds; drawing {len(data)} panels")
    draw(data, args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
