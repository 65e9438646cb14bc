"""End to end: a real Prometheus scrapes the real gateway and its two tiny vLLM CPU engines
under traffic; every dashboard and recording-rule expression then returns data through
Prometheus' HTTP API, and the values agree with what the checkpoints and traffic imply."""

from __future__ import annotations

import json
import math
import time

import pytest

from testkit.promql import (
    alert_rules,
    dashboard_targets,
    metric_names,
    recording_rules,
    substitute,
)

pytestmark = pytest.mark.slow

# Series that legitimately do not exist here: NVML sees no GPU on a CPU machine.
NO_GPU_HERE = {"moeprune_engine_gpu_memory_bytes"}


def result_of(live, expr: str) -> list[dict]:
    answer = live.query(expr)
    assert answer["status"] == "success", f"{expr}: {answer.get('error')}"
    return answer["data"]["result"]


def values(series: list[dict], label: str = "variant") -> dict[str, float]:
    return {item["metric"].get(label, ""): float(item["value"][1]) for item in series}


def test_traffic_succeeded(live):
    assert live.statuses and set(live.statuses) == {200}


def test_every_dashboard_expression_returns_data(live):
    empty = []
    for title, expr in dashboard_targets():
        series = result_of(live, substitute(expr))
        if not series and not metric_names(expr) <= NO_GPU_HERE:
            empty.append(f"{title}: {expr}")
    assert not empty, "no series for:\n" + "\n".join(empty)


def test_a_concrete_variant_selects_only_that_variant(live):
    concrete = {"$variant": "pruned-50", "$experiment": "ab", "$__rate_interval": "1m"}
    for title, expr in dashboard_targets():
        if "$variant" not in expr or metric_names(expr) <= NO_GPU_HERE:
            continue
        series = result_of(live, substitute(expr, concrete))
        assert series, f"{title}: no data for pruned-50"
        assert {item["metric"]["variant"] for item in series} == {"pruned-50"}, title


def test_every_recording_rule_expression_returns_data_and_is_recorded(live):
    for name, expr in recording_rules().items():
        assert result_of(live, expr), f"{name}: no series"
        assert result_of(live, name), f"{name} was not recorded by the rule evaluation"


def test_every_alert_expression_evaluates(live):
    for expr in alert_rules().values():
        result_of(live, expr)  # no error; data only where the condition holds


def test_every_metric_used_is_in_the_live_exposition(live):
    exposed = {
        item["metric"]["__name__"]
        for item in result_of(live, 'count by (__name__) ({__name__=~"moeprune_.*|vllm:.*"})')
    }
    exprs = [expr for _, expr in dashboard_targets()] + list(recording_rules().values())
    used = set().union(*(metric_names(expr) for expr in exprs)) - set(recording_rules())
    assert used - exposed <= NO_GPU_HERE, f"not exposed: {used - exposed - NO_GPU_HERE}"


def test_memory_saved_matches_the_pruning_manifest(live):
    manifest = json.loads((live.models["pruned-50"] / "pruning.json").read_text())
    before, after = manifest["bytes"]["before"]["total"], manifest["bytes"]["after"]["total"]
    saved = values(result_of(live, "moeprune_variant_bytes_saved"))
    assert saved["pruned-50"] == before - after > 0
    ratio = values(result_of(live, "moeprune_variant_bytes_saved_ratio"))
    assert ratio["pruned-50"] == pytest.approx((before - after) / before)
    weights = values(result_of(live, "moeprune_variant_weight_bytes"))
    assert weights == {"base": before, "pruned-50": after}


def test_engines_are_up_and_scraped_with_their_variant_label(live):
    assert values(result_of(live, "moeprune_backend_up")) == {"base": 1.0, "pruned-50": 1.0}
    assert set(values(result_of(live, "vllm:kv_cache_usage_perc"))) == {"base", "pruned-50"}
    generated = values(result_of(live, "variant:vllm_generation_tokens:rate5m"))
    assert generated["base"] > 0 and generated["pruned-50"] > 0


def test_arm_shares_sum_to_one_and_flags_compare_with_the_baseline(live):
    shares = values(result_of(live, "experiment_variant:moeprune_experiment_assignments:share_rate5m"))
    assert math.isclose(sum(shares.values()), 1.0, rel_tol=1e-9)
    flag_rates = result_of(live, 'variant_flag:moeprune_reliability_flags:ratio_rate5m{variant="pruned-50"}')
    # The report card's thresholds make every pruned-50 answer raise both of its flags
    # (other flags use the defaults and may or may not be raised).
    rates = values(flag_rates, "flag")
    assert rates["low_confidence"] == pytest.approx(1.0, rel=0.05)
    assert rates["high_entropy"] == pytest.approx(1.0, rel=0.05)
    baselines = values(result_of(live, 'moeprune_reliability_flag_baseline_ratio{variant="pruned-50"}'), "flag")
    assert baselines == {"low_confidence": 0.2, "high_entropy": 0.3}


def flag_rate_alerts(live) -> list[dict]:
    return [alert for alert in live.query_alerts() if alert["labels"]["alertname"] == "MoePruneFlagRateAboveBaseline"]


def test_flag_rate_alert_is_pending_for_the_pruned_variant(live):
    # The alert sits on recording rules over rate5m: allow a few more rule
    # evaluations (bounded) rather than trusting one fixed sleep.
    deadline = time.monotonic() + 30
    alerts = flag_rate_alerts(live)
    while len(alerts) < 2 and time.monotonic() < deadline:
        time.sleep(1)
        alerts = flag_rate_alerts(live)
    assert {(alert["labels"]["variant"], alert["labels"]["flag"]) for alert in alerts} == {
        ("pruned-50", "low_confidence"),
        ("pruned-50", "high_entropy"),
    }  # base has no report card
    assert all(alert["state"] == "pending" for alert in alerts)  # `for: 15m` has not elapsed
