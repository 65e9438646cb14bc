"""The Grafana dashboard: valid, fresh, on the provisioned datasource, and built only from real metric names."""

from __future__ import annotations

import json
import subprocess
import sys

import yaml

from tests.deploy.promql import (
    DASHBOARD,
    DEPLOY,
    contract_metrics,
    dashboard_targets,
    label_matchers,
    metric_names,
    recording_rules,
    vllm_metric_names,
)

# The issue's list of what ops must see, as the series that show it.
REQUIRED_SERIES = {
    "memory saved (bytes)": "moeprune_variant_bytes_saved",
    "memory saved (%)": "moeprune_variant_bytes_saved_ratio",
    "weight bytes": "moeprune_variant_weight_bytes",
    "engine memory": "moeprune_engine_resident_memory_bytes",
    "request rate": "moeprune_requests_total",
    "error rate": "variant:moeprune_request_errors:ratio_rate5m",
    "p50 latency": "variant:moeprune_request_duration_seconds:p50_5m",
    "p95 latency": "variant:moeprune_request_duration_seconds:p95_5m",
    "p50 TTFT": "variant:moeprune_time_to_first_token_seconds:p50_5m",
    "p95 TTFT": "variant:moeprune_time_to_first_token_seconds:p95_5m",
    "tokens/s": "moeprune_completion_tokens_total",
    "flag rate per flag": "variant_flag:moeprune_reliability_flags:ratio_rate5m",
    "flag baseline": "moeprune_reliability_flag_baseline_ratio",
    "A/B arm shares": "experiment_variant:moeprune_experiment_assignments:share_rate5m",
    "per-arm flag rates": "experiment_variant_flag:moeprune_reliability_flags:ratio_rate5m",
    "engine up": "moeprune_backend_up",
    "engine restarts": "moeprune_backend_restarts_total",
    "KV-cache usage": "vllm:kv_cache_usage_perc",
    "queue length": "vllm:num_requests_waiting",
}


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def test_committed_json_is_what_the_generator_writes():
    result = subprocess.run([sys.executable, str(DEPLOY / "grafana" / "build_dashboard.py"), "--check"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_every_query_uses_the_provisioned_datasource_uid():
    provisioned = yaml.safe_load((DEPLOY / "grafana/provisioning/datasources/prometheus.yml").read_text())
    uid = provisioned["datasources"][0]["uid"]
    board = dashboard()
    for panel in board["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": uid}, panel["title"]
        assert all(target["datasource"]["uid"] == uid for target in panel["targets"])
    assert all(variable["datasource"]["uid"] == uid for variable in board["templating"]["list"])


def test_variant_and_experiment_variables_filter_the_panels():
    board = dashboard()
    assert [variable["name"] for variable in board["templating"]["list"]] == ["variant", "experiment"]
    for title, expr in dashboard_targets(board):
        assert "$variant" in expr or "$experiment" in expr, f"{title}: {expr} ignores the variables"


def test_every_metric_name_exists_in_the_gateway_contract_or_vllm():
    known = set(contract_metrics()) | vllm_metric_names()
    recorded = recording_rules()
    for name, expr in recorded.items():
        assert metric_names(expr) <= known, f"recording rule {name} uses unknown {metric_names(expr) - known}"
    for title, expr in dashboard_targets():
        unknown = metric_names(expr) - known - set(recorded)
        assert not unknown, f"panel {title!r} uses {unknown}, exposed by neither the gateway nor vLLM"


def test_gateway_metrics_are_filtered_only_by_their_contract_labels():
    contract = contract_metrics()
    exprs = [expr for _, expr in dashboard_targets()] + list(recording_rules().values())
    for expr in exprs:
        for name, labels in label_matchers(expr):
            if name in contract:
                assert labels <= contract[name], f"{name} has no label {labels - contract[name]}"


def test_the_issue_s_panels_are_all_there():
    used = set().union(*(metric_names(expr) for _, expr in dashboard_targets()))
    missing = {what: series for what, series in REQUIRED_SERIES.items() if series not in used}
    assert not missing


def test_layout_is_valid():
    panels = dashboard()["panels"]
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids))
    occupied = set()
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        cells = {(x, y) for x in range(grid["x"], grid["x"] + grid["w"])
                 for y in range(grid["y"], grid["y"] + grid["h"])}
        assert not cells & occupied, f"{panel['title']} overlaps another panel"
        occupied |= cells


def test_metric_name_extraction_skips_functions_keywords_and_labels():
    expr = 'sum by (variant, le) (rate(a_total{status=~"5.."}[5m])) / on (variant) group_left b:c:d or vector(0)'
    assert metric_names(expr) == {"a_total", "b:c:d"}
