"""Write the Grafana dashboard JSON from the panel list in panels.py.

    python deploy/grafana/build_dashboard.py          # rewrite dashboards/moeprune.json
    python deploy/grafana/build_dashboard.py --check  # exit 1 if the file is stale

The JSON is committed (Grafana provisioning and the Kubernetes ConfigMap read
it); the tests fail when it differs from what this script generates.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from panels import ROWS, Panel  # noqa: E402

# Every panel, target and query variable reads the `datasource` template variable, so the
# dashboard imports into any Grafana as is: the variable lists that Grafana's Prometheus
# datasources and starts on the provisioned one (compose); where that uid does not exist,
# Grafana selects one of its Prometheus datasources (the drop-down changes it).
DATASOURCE_VARIABLE = "datasource"
DATASOURCE = {"type": "prometheus", "uid": "${%s}" % DATASOURCE_VARIABLE}
# Must match the uid and name in provisioning/datasources/prometheus.yml.
PROVISIONED_DATASOURCE = {"uid": "moeprune-prometheus", "name": "Prometheus"}
# Shown instead of an empty panel, or a NaN ratio, when a rate has nothing to count.
NO_TRAFFIC = "no traffic"
NO_DATA = "no data"
# vLLM publishes Grafana dashboards for the engines' own vllm:* metrics; the link opens
# them, and the second lists those already imported here (tagged `vllm`).
VLLM_DASHBOARDS_URL = "https://docs.vllm.ai/en/stable/examples/observability/dashboards/"
VLLM_LINK = {"title": "vLLM engine dashboards", "url": VLLM_DASHBOARDS_URL, "targetBlank": True}
DASHBOARD_UID = "moeprune-overview"
OUTPUT = Path(__file__).resolve().parent / "dashboards" / "moeprune.json"
GRID_WIDTH = 24
PANEL_HEIGHT = {"stat": 5, "timeseries": 8}


def variable(name: str, label: str, query: str) -> dict:
    return {
        "name": name, "label": label, "type": "query", "datasource": DATASOURCE,
        "query": {"query": query, "refId": f"{name}-values"}, "definition": query,
        "refresh": 2, "sort": 1, "multi": True, "includeAll": True, "allValue": ".*",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
    }


def datasource_variable() -> dict:
    return {
        "name": DATASOURCE_VARIABLE, "label": "Data source", "type": "datasource", "query": "prometheus",
        "regex": "", "hide": 0, "refresh": 1, "multi": False, "includeAll": False,
        "current": {"selected": True, "text": PROVISIONED_DATASOURCE["name"],
                    "value": PROVISIONED_DATASOURCE["uid"]},
    }


def no_value_text(panel: Panel) -> str:
    return NO_TRAFFIC if panel.rate_based else NO_DATA


def field_config(panel: Panel) -> dict:
    text = no_value_text(panel)
    defaults: dict = {
        "unit": panel.unit,
        "noValue": text,  # no series at all
        # A ratio of two zero rates is NaN: say why instead of drawing nothing.
        "mappings": [{"type": "special", "options": {"match": "null+nan", "result": {"text": text}}}],
    }
    if panel.kind == "timeseries":
        defaults["custom"] = {"lineWidth": 2, "fillOpacity": 10, "showPoints": "never",
                              "stacking": {"mode": "normal" if panel.stack else "none", "group": "A"}}
    overrides = []
    if any(query.legend.endswith("baseline") for query in panel.queries):
        overrides.append({
            "matcher": {"id": "byRegexp", "options": ".*baseline$"},
            "properties": [{"id": "custom.lineStyle", "value": {"fill": "dash", "dash": [10, 10]}}],
        })
    return {"defaults": defaults, "overrides": overrides}


def panel_json(panel: Panel, panel_id: int, x: int, y: int) -> dict:
    body = {
        "id": panel_id, "type": panel.kind, "title": panel.title, "description": panel.description,
        "datasource": DATASOURCE,
        "gridPos": {"x": x, "y": y, "w": panel.width, "h": PANEL_HEIGHT[panel.kind]},
        "targets": [
            {"refId": chr(ord("A") + index), "datasource": DATASOURCE, "expr": query.expr,
             "legendFormat": query.legend, "range": True}
            for index, query in enumerate(panel.queries)
        ],
        "fieldConfig": field_config(panel),
    }
    if any("vllm:" in query.expr for query in panel.queries):
        body["links"] = [VLLM_LINK]
    if panel.kind == "stat":
        body["options"] = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                           "colorMode": "value", "graphMode": "none", "textMode": "value_and_name"}
    else:
        body["options"] = {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                           "tooltip": {"mode": "multi", "sort": "desc"}}
    return body


def layout() -> list[dict]:
    """Rows stacked top to bottom; panels flow left to right and wrap at 24 columns."""
    panels, next_id, y = [], 1, 0
    for row in ROWS:
        panels.append({"id": next_id, "type": "row", "title": row.title, "collapsed": False,
                       "gridPos": {"x": 0, "y": y, "w": GRID_WIDTH, "h": 1}, "panels": []})
        next_id, y, x, line_height = next_id + 1, y + 1, 0, 0
        for panel in row.panels:
            if x + panel.width > GRID_WIDTH:
                x, y, line_height = 0, y + line_height, 0
            panels.append(panel_json(panel, next_id, x, y))
            next_id, x = next_id + 1, x + panel.width
            line_height = max(line_height, PANEL_HEIGHT[panel.kind])
        y += line_height
    return panels


def build() -> dict:
    return {
        "uid": DASHBOARD_UID,
        "title": "MoE prune serve: memory savings and reliability",
        "description": "Pruned Mixture-of-Experts variants behind the moeprune gateway: memory saved, "
                       "traffic, latency, reliability flags, A/B arms and vLLM engines.",
        "tags": ["moeprune", "vllm"],
        "editable": True,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-1h", "to": "now"},
        "timezone": "utc",
        "graphTooltip": 1,
        "annotations": {"list": []},
        "links": [
            dict(VLLM_LINK, type="link", icon="external link", tooltip="vLLM's own dashboards for its engines"),
            {"title": "vLLM dashboards here", "type": "dashboards", "tags": ["vllm"], "asDropdown": True,
             "keepTime": True, "includeVars": False, "targetBlank": False},
        ],
        "templating": {"list": [
            datasource_variable(),
            variable("variant", "Variant", "label_values(moeprune_backend_up, variant)"),
            variable("experiment", "Experiment", "label_values(moeprune_experiment_assignments_total, experiment)"),
        ]},
        "panels": layout(),
    }


def render() -> str:
    return json.dumps(build(), indent=2) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the committed JSON is stale")
    args = parser.parse_args()
    if args.check:
        if not OUTPUT.exists() or OUTPUT.read_text() != render():
            print(f"{OUTPUT} is stale: run python {Path(__file__).name}", file=sys.stderr)
            return 1
        return 0
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(render())
    print(f"wrote {OUTPUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
