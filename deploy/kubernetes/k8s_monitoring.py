"""Prometheus Operator and Grafana objects: ServiceMonitors, PrometheusRule, dashboard ConfigMap.

They reuse the one-host files (deploy/prometheus/rules, deploy/grafana/dashboards)
so both deployments alert and chart exactly the same expressions.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from k8s_engines import labels

DEPLOY_DIR = Path(__file__).resolve().parent.parent
RULE_FILES = ("recording.yml", "alerts.yml")
DASHBOARD = DEPLOY_DIR / "grafana" / "dashboards" / "moeprune.json"
# The datasource uid the committed dashboard names (deploy/grafana/build_dashboard.py).
COMPOSE_DATASOURCE_UID = "moeprune-prometheus"


def _metadata(name: str, values: dict, extra_labels: dict | None = None) -> dict:
    return {"name": name, "namespace": values["namespace"],
            "labels": {**labels("monitoring"), **values["monitoring"].get("labels", {}), **(extra_labels or {})}}


def service_monitors(values: dict) -> list[dict]:
    interval = values["monitoring"].get("scrapeInterval", "15s")
    gateway = {
        "apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor",
        "metadata": _metadata("moeprune-gateway", values),
        "spec": {"selector": {"matchLabels": labels("gateway")},
                 "endpoints": [{"port": "http", "path": "/metrics", "interval": interval}]},
    }
    # One monitor for every engine Service. The Service's variant label becomes
    # the `variant` label on vllm:* series, which the dashboard filters on.
    engines = {
        "apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor",
        "metadata": _metadata("moeprune-vllm", values),
        "spec": {"selector": {"matchLabels": labels("engine")},
                 "endpoints": [{"port": "http", "path": "/metrics", "interval": interval, "relabelings": [
                     {"sourceLabels": ["__meta_kubernetes_service_label_moeprune_io_variant"],
                      "targetLabel": "variant", "action": "replace"},
                 ]}]},
    }
    return [gateway, engines]


def prometheus_rule(values: dict) -> dict:
    groups = []
    for name in RULE_FILES:
        groups += yaml.safe_load((DEPLOY_DIR / "prometheus" / "rules" / name).read_text())["groups"]
    return {"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule",
            "metadata": _metadata("moeprune", values), "spec": {"groups": groups}}


def dashboard_config_map(values: dict) -> dict:
    """The dashboard for Grafana's sidecar, pointed at the cluster's Prometheus datasource."""
    uid = values["monitoring"].get("grafanaDatasourceUid", COMPOSE_DATASOURCE_UID)
    dashboard = DASHBOARD.read_text().replace(f'"uid": "{COMPOSE_DATASOURCE_UID}"', f'"uid": "{uid}"')
    json.loads(dashboard)
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": _metadata("moeprune-dashboard", values, {"grafana_dashboard": "1"}),
            "data": {"moeprune.json": dashboard}}


def monitoring_objects(values: dict) -> list[dict]:
    monitoring = values["monitoring"]
    objects = []
    if monitoring.get("serviceMonitors", True):
        objects += service_monitors(values)
    if monitoring.get("prometheusRules", True):
        objects.append(prometheus_rule(values))
    if monitoring.get("grafanaDashboard", True):
        objects.append(dashboard_config_map(values))
    return objects
