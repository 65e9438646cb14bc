"""The engines' NetworkPolicy: only the gateway pods and Prometheus may reach a vLLM pod.

An engine's OpenAI API has no key of the gateway's, so without this policy any
pod in the cluster could bypass the gateway's authentication and limits.
(It takes effect where the cluster's network plugin enforces NetworkPolicy.)
"""

from __future__ import annotations

from k8s_engines import labels

# kube-prometheus-stack's defaults; override under `networkPolicy.prometheus` in the values.
DEFAULT_PROMETHEUS = {
    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
    "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
}


def engine_network_policy(values: dict) -> dict | None:
    policy = values.get("networkPolicy") or {}
    if not policy.get("enabled", True):
        return None
    prometheus = policy.get("prometheus") or DEFAULT_PROMETHEUS
    peers = [{"podSelector": {"matchLabels": labels("gateway")}}]
    peers.append({key: prometheus[key] for key in ("namespaceSelector", "podSelector") if key in prometheus})
    return {
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "moeprune-vllm", "namespace": values["namespace"], "labels": labels("engine")},
        "spec": {
            "podSelector": {"matchLabels": labels("engine")},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": peers, "ports": [{"protocol": "TCP", "port": int(values["vllm"]["port"])}]}],
        },
    }
