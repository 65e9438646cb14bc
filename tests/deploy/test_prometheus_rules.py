"""Prometheus files checked by Debian's promtool: config, rules, and the rules' unit tests."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from testkit.promql import DEPLOY, alert_rules, recording_rules

PROMETHEUS_DIR = DEPLOY / "prometheus"


def promtool(*args: str) -> subprocess.CompletedProcess:
    exe = shutil.which("promtool")
    if exe is None:
        pytest.fail("promtool not installed: bash scripts/system-packages.sh installs Debian's prometheus")
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=120, cwd=PROMETHEUS_DIR)


def test_promtool_check_config():
    result = promtool("check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 rule files found" in result.stdout + result.stderr


def test_promtool_check_rules():
    result = promtool("check", "rules", "rules/recording.yml", "rules/alerts.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_rejects_a_broken_rule(tmp_path):
    """The check is real: a rule with a PromQL syntax error fails."""
    bad = tmp_path / "bad.yml"
    bad.write_text("groups:\n  - name: x\n    rules:\n      - record: a:b\n        expr: sum by (variant (x)\n")
    assert promtool("check", "rules", str(bad)).returncode != 0


def test_rule_unit_tests_pass():
    """Alerts fire (and stay quiet) on synthetic series: engine down, error rate, flags vs baseline, SLO."""
    result = promtool("test", "rules", "tests/rules.test.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_issue_s_alerts_exist():
    alerts = alert_rules()
    for name in (
        "MoePruneEngineDown",
        "MoePruneFlagRateAboveBaseline",
        "MoePruneHighErrorRate",
        "MoePruneLatencySLO",
        "MoePruneKVCacheNearFull",
        "MoePruneGPUMemoryNearLimit",
    ):
        assert name in alerts
    assert "moeprune_reliability_flag_baseline_ratio" in alerts["MoePruneFlagRateAboveBaseline"]


def test_live_recertification_alerts_read_the_live_gauges():
    """Issue 26: an alert when live feedback trips a fallback, and one when the bound crosses alpha."""
    alerts = alert_rules()
    assert "moeprune_live_fallback_active" in alerts["MoePruneReliabilityFallback"]
    bound = alerts["MoePruneLiveErrorBoundAboveAlpha"]
    assert "moeprune_live_error_upper_bound" in bound and "moeprune_live_certificate_alpha" in bound


def test_recording_rule_names_follow_the_level_metric_operations_convention():
    for name in recording_rules():
        level, metric, operations = name.split(":")
        assert level and metric and operations, name
