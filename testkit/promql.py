"""The PromQL expressions the project ships (rules, dashboard), the metric names they use, and the
metric names the gateway (docs/contracts.md) and vLLM expose.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "moeprune.json"
RULES_DIR = DEPLOY / "prometheus" / "rules"
VLLM_NAMES_FILE = ROOT / "tests" / "deploy" / "data" / "vllm_metrics.txt"

# Values the dashboard's variables take when an expression is evaluated outside Grafana.
ALL_VALUES = {"$variant": ".*", "$experiment": ".*", "$__rate_interval": "1m"}
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
PROMQL_WORDS = {
    "by",
    "on",
    "and",
    "or",
    "unless",
    "group_left",
    "group_right",
    "ignoring",
    "without",
    "bool",
    "offset",
    "inf",
    "nan",
}


def dashboard_targets(dashboard: dict | None = None) -> list[tuple[str, str]]:
    """(panel title, expr) for every query of every panel."""
    dashboard = dashboard or json.loads(DASHBOARD.read_text())
    return [(panel["title"], target["expr"]) for panel in dashboard["panels"] for target in panel.get("targets", [])]


def rule_groups(name: str) -> list[dict]:
    return yaml.safe_load((RULES_DIR / name).read_text())["groups"]


def recording_rules() -> dict[str, str]:
    """record name -> expr."""
    return {rule["record"]: rule["expr"] for group in rule_groups("recording.yml") for rule in group["rules"]}


def alert_rules() -> dict[str, str]:
    return {rule["alert"]: rule["expr"] for group in rule_groups("alerts.yml") for rule in group["rules"]}


def substitute(expr: str, values: dict[str, str] | None = None) -> str:
    for variable, value in (values or ALL_VALUES).items():
        expr = expr.replace(variable, value)
    return expr


def metric_names(expr: str) -> set[str]:
    """Metric names an expression selects (not functions, keywords or label names)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)  # strings
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # range durations
    text = re.sub(r"\b(by|on|without|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", text):
        word = match.group(0)
        is_call = text[match.end() :].lstrip().startswith("(")
        if not is_call and word.lower() not in PROMQL_WORDS:
            names.add(word)
    return names


def label_matchers(expr: str) -> list[tuple[str, set[str]]]:
    """(metric name, label names in its {...} matcher) for every selector with a matcher."""
    found = []
    for match in re.finditer(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{([^}]*)\}", expr):
        labels = set(re.findall(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)", match.group(2)))
        found.append((match.group(1), labels))
    return found


def contract_metrics() -> dict[str, set[str]]:
    """Gateway metric name (with histogram series suffixes) -> allowed labels, from docs/contracts.md."""
    text = (ROOT / "docs" / "contracts.md").read_text()
    table = text.split("## Gateway metrics", 1)[1].split("\n## ", 1)[0]
    metrics: dict[str, set[str]] = {}
    for line in table.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) != 3 or not cells[0].startswith("`moeprune_"):
            continue
        names = re.findall(r"`(moeprune_[a-z0-9_]+)`", cells[0])
        labels = set(re.findall(r"\b(variant|experiment|status|flag|kind|guard|decision)\b", cells[2]))
        for name in names:
            metrics[name] = labels
            if cells[1] == "histogram":
                for suffix in HISTOGRAM_SUFFIXES:
                    metrics[name + suffix] = labels | ({"le"} if suffix == "_bucket" else set())
    return metrics


def vllm_metric_names() -> set[str]:
    names = set()
    for line in VLLM_NAMES_FILE.read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name, kind = line.split()
        names.add(name)
        if kind == "histogram":
            names.update(name + suffix for suffix in HISTOGRAM_SUFFIXES)
    return names
