"""The gateway's Kubernetes objects: variants.yaml ConfigMap, API-key Secret, Deployment, Service.

In Kubernetes every variant is a `url:` variant pointing at its engine's
Service, so the gateway pods hold no GPU and scale independently.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import yaml
from k8s_engines import engine_url, labels

GATEWAY = "moeprune-gateway"
CONFIG_DIR = "/etc/moeprune"
KEYS_DIR = "/etc/moeprune/keys"
REPORT_CARD_DIR = "/etc/moeprune/report-cards"
DATABASE_DIR = "/etc/moeprune/experiment-db"
STATE_DIR = "/var/lib/moeprune"


def variants_file(values: dict) -> dict:
    """The gateway's variants.yaml: every variant routed by URL to its engine Service."""
    variants = {}
    for name, spec in values["variants"].items():
        entry = {"url": engine_url(name, values), "served_model_name": name}
        if spec.get("base"):
            entry["base"] = spec["base"]
        if spec.get("reportCard"):
            entry["report_card"] = f"{REPORT_CARD_DIR}/{name}.json"
        entry.update(spec.get("gateway", {}))
        variants[name] = entry
    return {"variants": variants, "experiments": values.get("experiments") or {}}


def config_map(values: dict, values_dir: Path) -> dict:
    data = {"variants.yaml": yaml.safe_dump(variants_file(values), sort_keys=False)}
    for name, spec in values["variants"].items():
        if spec.get("reportCard"):
            card = (values_dir / spec["reportCard"]).read_text()
            json.loads(card)  # fail at render time, not when the pod starts
            data[f"{name}.json"] = card
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": GATEWAY, "namespace": values["namespace"], "labels": labels("gateway")},
            "data": data}


def secret_name(values: dict) -> str:
    return values["gateway"].get("existingSecret") or f"{GATEWAY}-api-keys"


def api_key_secret(values: dict) -> dict | None:
    """The Secret for API keys, unless the values name one that already exists."""
    if values["gateway"].get("existingSecret"):
        return None
    keys = values["gateway"].get("apiKeys") or []
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": secret_name(values), "namespace": values["namespace"], "labels": labels("gateway")},
            "stringData": {"api_keys": "".join(f"{key}\n" for key in keys)}}


def config_volume(config: dict) -> dict:
    """variants.yaml at /etc/moeprune, report cards (the other keys) in their own directory."""
    items = [{"key": "variants.yaml", "path": "variants.yaml"}]
    items += [{"key": key, "path": f"report-cards/{key}"} for key in config["data"] if key != "variants.yaml"]
    return {"name": "config", "configMap": {"name": config["metadata"]["name"], "items": items}}


def gateway_deployment(values: dict, config: dict) -> dict:
    gateway = values["gateway"]
    port = int(gateway.get("port", 8080))
    # A changed variants.yaml or report card rolls the pods (the gateway reads them at start).
    checksum = hashlib.sha256(json.dumps(config["data"], sort_keys=True).encode()).hexdigest()
    env = [{"name": "MOEPRUNE_API_KEYS_FILE", "value": f"{KEYS_DIR}/api_keys"},
           {"name": "MOEPRUNE_STATE_DIR", "value": STATE_DIR}]
    database = gateway.get("experimentDatabaseSecret")
    if database:  # the DSN as a mounted file: never in the pod spec or its environment
        env.append({"name": "MOEPRUNE_EXPERIMENT_DSN_FILE", "value": f"{DATABASE_DIR}/dsn"})
    env += [{"name": key, "value": str(value)} for key, value in (gateway.get("env") or {}).items()]
    probe = {"httpGet": {"path": "/health", "port": "http"}, "periodSeconds": 10, "timeoutSeconds": 3}
    container = {
        "name": "gateway",
        "image": gateway["image"],
        "args": ["--config", f"{CONFIG_DIR}/variants.yaml", "--host", "0.0.0.0", "--port", str(port)],
        "env": env,
        "ports": [{"name": "http", "containerPort": port}],
        "resources": gateway.get("resources", {}),
        "volumeMounts": [
            {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
            {"name": "api-keys", "mountPath": KEYS_DIR, "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
            {"name": "state", "mountPath": STATE_DIR},
            *([{"name": "experiment-db", "mountPath": DATABASE_DIR, "readOnly": True}] if database else []),
        ],
        # /health, not /ready: /ready is false while any one engine is down, and
        # taking every gateway pod out of the Service would stop the healthy variants too.
        "readinessProbe": dict(probe, failureThreshold=3),
        "livenessProbe": dict(probe, failureThreshold=6),
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                            "capabilities": {"drop": ["ALL"]}},
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": GATEWAY, "namespace": values["namespace"], "labels": labels("gateway")},
        "spec": {
            "replicas": int(gateway.get("replicas", 1)),
            "selector": {"matchLabels": labels("gateway")},
            "template": {
                "metadata": {"labels": labels("gateway"), "annotations": {"moeprune.io/config-sha256": checksum}},
                "spec": {
                    "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001,
                                        "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [container],
                    "volumes": [
                        config_volume(config),
                        {"name": "api-keys", "secret": {"secretName": secret_name(values)}},
                        {"name": "tmp", "emptyDir": {}},
                        {"name": "state", "emptyDir": {}},
                        *([{"name": "experiment-db", "secret": {"secretName": database}}] if database else []),
                    ],
                },
            },
        },
    }


def gateway_service(values: dict) -> dict:
    port = int(values["gateway"].get("port", 8080))
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": GATEWAY, "namespace": values["namespace"], "labels": labels("gateway")},
            "spec": {"selector": labels("gateway"), "ports": [{"name": "http", "port": port, "targetPort": "http"}]}}
