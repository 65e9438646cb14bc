"""The Kubernetes manifests: the checked-in Kustomize base and overlays, rendered by `kubectl kustomize`
(what `kubectl apply -k`, Argo CD and Flux do) and checked object by object: Kubernetes' schemas, and the
properties the gateway and engines rely on (probes, limits, non-root, read-only root filesystem,
NetworkPolicy, Secrets referenced but never inlined)."""

from __future__ import annotations

import copy
import functools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import jsonschema
import kubernetes_validate
import pytest
import yaml

from app.config.variants import parse_config
from testkit.promql import DASHBOARD, DEPLOY, alert_rules, recording_rules

KUBERNETES_VERSION = "1.30.0"
KUBERNETES = DEPLOY / "kubernetes"
OVERLAYS = sorted(path.name for path in (KUBERNETES / "overlays").iterdir() if path.is_dir())
CRD_SCHEMAS = Path(__file__).resolve().parent / "schemas"
NAMESPACE = "moeprune"
KUBECTL = shutil.which("kubectl")
NO_KUBECTL = "kubectl is not installed: the Kustomize manifests are rendered with `kubectl kustomize`"


def kustomize(directory: Path | str) -> list[dict]:
    """The objects `kubectl kustomize DIR` renders (offline; the same build `kubectl apply -k` applies)."""
    if KUBECTL is None:
        pytest.skip(NO_KUBECTL)
    return copy.deepcopy(_kustomize(str(directory)))


@functools.cache
def _kustomize(directory: str) -> list[dict]:
    result = subprocess.run([KUBECTL, "kustomize", directory], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"kubectl kustomize {directory} failed:\n{result.stderr}"
    return [obj for obj in yaml.safe_load_all(result.stdout) if obj]


def overlay(name: str) -> list[dict]:
    return kustomize(KUBERNETES / "overlays" / name)


def by_kind(rendered: list[dict], kind: str) -> dict[str, dict]:
    return {obj["metadata"]["name"]: obj for obj in rendered if obj["kind"] == kind}


def gateway_config_map(rendered: list[dict]) -> dict:
    """The generated ConfigMap (name with Kustomize's content hash) the gateway pods mount."""
    pod = by_kind(rendered, "Deployment")["moeprune-gateway"]["spec"]["template"]["spec"]
    name = next(volume for volume in pod["volumes"] if volume["name"] == "config")["configMap"]["name"]
    return by_kind(rendered, "ConfigMap")[name]


def gateway_config(rendered: list[dict]):
    text = gateway_config_map(rendered)["data"]["variants.yaml"]
    return parse_config(yaml.safe_load(text), "rendered variants.yaml")  # the gateway's own validation


def validate(obj: dict) -> None:
    if obj["apiVersion"].startswith("monitoring.coreos.com/"):
        schema = json.loads((CRD_SCHEMAS / f"{obj['kind'].lower()}.json").read_text())
        jsonschema.validate(obj, schema)
    else:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def test_the_two_overlays_exist():
    assert OVERLAYS == ["cpu-one-host", "gpu-node-pool"]


@pytest.mark.parametrize("name", OVERLAYS)
def test_every_object_validates_against_the_kubernetes_schemas(name):
    rendered = overlay(name)
    # No Secret: the API keys and the database DSN live in Secrets the operator creates, never in git.
    assert {obj["kind"] for obj in rendered} == {
        "Deployment",
        "Service",
        "ConfigMap",
        "NetworkPolicy",
        "ServiceMonitor",
        "PrometheusRule",
    }
    for obj in rendered:
        validate(obj)


def test_the_base_renders_and_validates_on_its_own():
    rendered = kustomize(KUBERNETES / "base")
    assert {obj["kind"] for obj in rendered} == {"Deployment", "Service", "ConfigMap", "NetworkPolicy"}
    for obj in rendered:
        validate(obj)


def test_validation_is_strict():
    """A misspelt field or a wrong type is caught, for core kinds and for the CRDs."""
    rendered = overlay("gpu-node-pool")
    deployment = by_kind(rendered, "Deployment")["moeprune-gateway"]
    deployment["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(deployment)
    monitor = by_kind(rendered, "ServiceMonitor")["moeprune-vllm"]
    monitor["spec"]["endpoints"][0]["interval"] = "fifteen seconds"
    with pytest.raises(jsonschema.ValidationError):
        validate(monitor)


@pytest.mark.parametrize("name", OVERLAYS)
def test_every_object_lands_in_one_namespace(name):
    """Including the monitoring component's objects (a Component is not covered by the base's `namespace:`)."""
    assert {obj["metadata"].get("namespace") for obj in overlay(name)} == {NAMESPACE}


@pytest.mark.parametrize("name", OVERLAYS)
def test_each_variant_is_a_vllm_deployment_with_a_service(name):
    rendered = overlay(name)
    deployments, services = by_kind(rendered, "Deployment"), by_kind(rendered, "Service")
    variants = gateway_config(rendered).variants
    assert set(variants) == {"base", "pruned-50"}
    engines = {n for n, d in deployments.items() if d["metadata"]["labels"]["app.kubernetes.io/component"] == "engine"}
    assert engines == {f"moeprune-vllm-{variant}" for variant in variants}  # no engine without its variant
    for variant in variants:
        deployment = deployments[f"moeprune-vllm-{variant}"]
        assert deployment["spec"]["strategy"] == {"type": "Recreate"}
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        args = container["args"]
        assert args[0].startswith("/models/")
        assert args[args.index("--served-model-name") + 1] == variant
        assert args[args.index("--port") + 1] == str(container["ports"][0]["containerPort"])
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert container[probe]["httpGet"] == {"path": "/health", "port": "http"}
        assert container["startupProbe"]["periodSeconds"] * container["startupProbe"]["failureThreshold"] >= 900
        assert container["resources"]["limits"]["memory"] and container["resources"]["requests"]["memory"]
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
        assert {"name": "HF_HUB_OFFLINE", "value": "1"} in container["env"]
        models = next(volume for volume in pod["volumes"] if volume["name"] == "models")
        mount = next(m for m in container["volumeMounts"] if m["name"] == "models")
        assert mount == {"name": "models", "mountPath": "/models", "readOnly": True}
        assert models.get("persistentVolumeClaim", {}).get("readOnly", True) is True
        service = services[f"moeprune-vllm-{variant}"]
        assert service["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
        assert service["spec"]["ports"][0]["targetPort"] in {port["name"] for port in container["ports"]}
        assert service["metadata"]["labels"]["moeprune.io/variant"] == variant  # the dashboard's `variant`


def engine_containers(rendered: list[dict]) -> dict[str, dict]:
    return {
        name.removeprefix("moeprune-vllm-"): d["spec"]["template"]["spec"]["containers"][0]
        for name, d in by_kind(rendered, "Deployment").items()
        if name.startswith("moeprune-vllm-")
    }


def test_gpu_overlay_gives_each_engine_its_gpus_and_shards_over_them():
    rendered = overlay("gpu-node-pool")
    for name, container in engine_containers(rendered).items():
        resources, args = container["resources"], container["args"]
        gpus = resources["limits"]["nvidia.com/gpu"]
        assert gpus >= 1 and resources["requests"]["nvidia.com/gpu"] == gpus, name
        assert int(args[args.index("--tensor-parallel-size") + 1]) == gpus, name
        assert container["image"].startswith("vllm/vllm-openai:"), name
    for deployment in by_kind(rendered, "Deployment").values():
        if deployment["metadata"]["name"].startswith("moeprune-vllm-"):
            pod = deployment["spec"]["template"]["spec"]
            assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
            claim = next(v for v in pod["volumes"] if v["name"] == "models")["persistentVolumeClaim"]
            assert claim == {"claimName": "moeprune-models", "readOnly": True}


def test_cpu_overlay_runs_vllm_cpu_from_the_project_image_without_gpus():
    rendered = overlay("cpu-one-host")
    gateway = by_kind(rendered, "Deployment")["moeprune-gateway"]["spec"]["template"]["spec"]["containers"][0]
    for name, container in engine_containers(rendered).items():
        assert "nvidia.com/gpu" not in container["resources"].get("limits", {}), name
        assert "nvidia.com/gpu" not in container["resources"].get("requests", {}), name
        assert container["image"] == gateway["image"] and container["image"].endswith("-cpu"), name
        assert container["command"] == ["vllm", "serve"], name  # the image's entrypoint is the gateway
        assert "--kv-cache-memory-bytes" in container["args"], name  # the CPU build's KV cache
        assert container["resources"]["limits"]["cpu"], name
    for deployment in by_kind(rendered, "Deployment").values():
        if deployment["metadata"]["name"].startswith("moeprune-vllm-"):
            pod = deployment["spec"]["template"]["spec"]
            assert pod["securityContext"]["runAsNonRoot"] is True
            assert next(v for v in pod["volumes"] if v["name"] == "models")["hostPath"]["path"] == "/srv/models"


@pytest.mark.parametrize("name", OVERLAYS)
def test_gateway_routes_every_variant_to_its_engine_service(name):
    rendered = overlay(name)
    config = gateway_config(rendered)
    services = by_kind(rendered, "Service")
    for variant_name, variant in config.variants.items():
        url = urlsplit(variant.url)
        service = services[url.hostname.split(".")[0]]
        assert service["metadata"]["name"] == f"moeprune-vllm-{variant_name}"
        assert url.hostname in {service["metadata"]["name"], f"{service['metadata']['name']}.{NAMESPACE}.svc"}
        assert url.port == service["spec"]["ports"][0]["port"]
        assert variant.served_model_name == variant_name
    assert config.variants["pruned-50"].base == "base"
    assert config.experiments["ab"].arms == {"base": 50, "pruned-50": 50}


@pytest.mark.parametrize("name", OVERLAYS)
def test_gateway_pod_is_locked_down_and_probed(name):
    rendered = overlay(name)
    pod = by_kind(rendered, "Deployment")["moeprune-gateway"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] > 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    # /health, not /ready: one engine down must not take the gateway out of its Service.
    assert container["readinessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert container["resources"]["limits"]["memory"] and container["resources"]["requests"]["cpu"]
    mounts = {mount["name"]: mount for mount in container["volumeMounts"]}
    writable = {mount["mountPath"] for mount in mounts.values() if not mount.get("readOnly")}
    assert writable == {"/tmp", "/var/lib/moeprune"}  # emptyDirs; the root filesystem is read-only
    env = {item["name"]: item["value"] for item in container["env"]}
    assert env["MOEPRUNE_STATE_DIR"] == mounts["state"]["mountPath"]


@pytest.mark.parametrize("name", OVERLAYS)
def test_gateway_mounts_its_config_and_the_api_key_secret(name):
    rendered = overlay(name)
    pod = by_kind(rendered, "Deployment")["moeprune-gateway"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    config_map = gateway_config_map(rendered)
    # Kustomize's content hash in the name: a changed variants.yaml rolls the pods.
    assert config_map["metadata"]["name"].startswith("moeprune-gateway-")
    assert volumes["api-keys"]["secret"]["secretName"] == "moeprune-api-keys"
    mounts = {mount["name"]: mount["mountPath"] for mount in container["volumeMounts"]}
    env = {item["name"]: item["value"] for item in container["env"]}
    assert env["MOEPRUNE_API_KEYS_FILE"] == mounts["api-keys"] + "/api_keys"
    config_arg = container["args"][container["args"].index("--config") + 1]
    assert config_arg == mounts["config"] + "/variants.yaml"


@pytest.mark.parametrize("name", OVERLAYS)
def test_secrets_are_referenced_never_inlined(name):
    rendered = overlay(name)
    assert "Secret" not in {obj["kind"] for obj in rendered}
    for kustomization in KUBERNETES.rglob("kustomization.yaml"):
        assert "secretGenerator" not in yaml.safe_load(kustomization.read_text()), kustomization
    for deployment in by_kind(rendered, "Deployment").values():
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            for item in container.get("env", []):
                assert "valueFrom" not in item, f"{item['name']}: secrets are mounted as files, not env"
                assert "://" not in item["value"] or not item["name"].endswith("DSN"), item["name"]
                assert not item["name"].endswith(("_DSN", "_API_KEYS", "_API_KEY", "_PASSWORD", "_TOKEN")), (
                    f"{item['name']}: give the secret as a mounted file (…_FILE)"
                )


@pytest.mark.parametrize("name", OVERLAYS)
def test_more_than_one_gateway_replica_shares_the_experiment_database(name):
    """Several replicas need the PostgreSQL DSN (a Secret mounted as a file); one may keep SQLite."""
    rendered = overlay(name)
    deployment = by_kind(rendered, "Deployment")["moeprune-gateway"]
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    env = {item["name"]: item["value"] for item in container["env"]}
    mounts = {mount["name"]: mount["mountPath"] for mount in container["volumeMounts"]}
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    assert {"name": "state", "emptyDir": {}} in pod["volumes"]
    if deployment["spec"]["replicas"] > 1:
        assert volumes["experiment-db"] == {"name": "experiment-db", "secret": {"secretName": "moeprune-experiment-db"}}
        assert env["MOEPRUNE_EXPERIMENT_DSN_FILE"] == mounts["experiment-db"] + "/dsn"
    else:
        assert "experiment-db" not in volumes and "MOEPRUNE_EXPERIMENT_DSN_FILE" not in env


def test_the_gpu_overlay_runs_two_gateway_replicas():
    assert by_kind(overlay("gpu-node-pool"), "Deployment")["moeprune-gateway"]["spec"]["replicas"] == 2


@pytest.mark.parametrize("name", OVERLAYS)
def test_only_the_gateway_and_prometheus_may_reach_the_engines(name):
    rendered = overlay(name)
    policy = by_kind(rendered, "NetworkPolicy")["moeprune-vllm"]
    selector = policy["spec"]["podSelector"]["matchLabels"]
    pods = {n: d["spec"]["template"]["metadata"]["labels"] for n, d in by_kind(rendered, "Deployment").items()}
    assert {n for n, pod_labels in pods.items() if selector.items() <= pod_labels.items()} == {
        "moeprune-vllm-base",
        "moeprune-vllm-pruned-50",
    }
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    (rule,) = policy["spec"]["ingress"]
    gateway_peer, prometheus_peer = rule["from"]
    assert gateway_peer == {"podSelector": {"matchLabels": pods["moeprune-gateway"]}}
    assert "namespaceSelector" not in gateway_peer  # gateway pods of this namespace only
    assert prometheus_peer["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}
    assert prometheus_peer["namespaceSelector"] == {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}
    engine_port = by_kind(rendered, "Service")["moeprune-vllm-base"]["spec"]["ports"][0]["port"]
    assert rule["ports"] == [{"protocol": "TCP", "port": engine_port}]


@pytest.mark.parametrize("name", OVERLAYS)
def test_service_monitors_select_the_rendered_services(name):
    rendered = overlay(name)
    services = by_kind(rendered, "Service")
    for monitor in by_kind(rendered, "ServiceMonitor").values():
        selected = [
            service
            for service in services.values()
            if monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
        ]
        assert selected, monitor["metadata"]["name"]
        for service in selected:
            assert monitor["spec"]["endpoints"][0]["port"] in {port["name"] for port in service["spec"]["ports"]}
        assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    engines = by_kind(rendered, "ServiceMonitor")["moeprune-vllm"]
    relabel = engines["spec"]["endpoints"][0]["relabelings"][0]
    assert relabel["targetLabel"] == "variant"
    # Prometheus turns the Service label moeprune.io/variant into this meta label.
    assert relabel["sourceLabels"] == ["__meta_kubernetes_service_label_moeprune_io_variant"]


def test_monitoring_copies_are_in_sync_with_the_shared_rules_and_dashboard():
    result = subprocess.run(
        [sys.executable, str(KUBERNETES / "sync_monitoring.py"), "--check"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr


def test_prometheus_rule_passes_promtool(tmp_path):
    rule = by_kind(overlay("gpu-node-pool"), "PrometheusRule")["moeprune"]
    rule_file = tmp_path / "rules.yml"
    rule_file.write_text(yaml.safe_dump(rule["spec"]))
    result = subprocess.run(
        [shutil.which("promtool") or "promtool", "check", "rules", str(rule_file)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(recording_rules()) + len(alert_rules())} rules found" in result.stdout  # every shipped rule
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"


def test_dashboard_config_map_is_labelled_for_the_grafana_sidecar():
    config = by_kind(overlay("gpu-node-pool"), "ConfigMap")["moeprune-dashboard"]
    assert config["metadata"]["labels"]["grafana_dashboard"] == "1"
    # The very dashboard compose provisions: its ${datasource} variable finds the cluster's Prometheus.
    assert json.loads(config["data"]["moeprune.json"]) == json.loads(DASHBOARD.read_text())


def test_an_overlay_can_add_a_report_card_to_the_gateway_config(tmp_path):
    """The way kustomization.yaml documents: merge a card into the generated ConfigMap, name it in variants.yaml."""
    card = {"flags": {"low_confidence": {"base_rate": 0.2}}}
    (tmp_path / "card.json").write_text(json.dumps(card))
    variants = yaml.safe_load((KUBERNETES / "base" / "variants.yaml").read_text())
    variants["variants"]["pruned-50"]["report_card"] = "/etc/moeprune/pruned-50.json"
    (tmp_path / "variants.yaml").write_text(yaml.safe_dump(variants))
    (tmp_path / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "resources": [os.path.relpath(KUBERNETES / "overlays" / "gpu-node-pool", tmp_path)],
                "configMapGenerator": [
                    {
                        "name": "moeprune-gateway",
                        "behavior": "merge",
                        "files": ["variants.yaml", "pruned-50.json=card.json"],
                    }
                ],
            }
        )
    )
    rendered = kustomize(tmp_path)
    config_map = gateway_config_map(rendered)
    container = by_kind(rendered, "Deployment")["moeprune-gateway"]["spec"]["template"]["spec"]["containers"][0]
    config_dir = next(m["mountPath"] for m in container["volumeMounts"] if m["name"] == "config")
    card_path = gateway_config(rendered).variants["pruned-50"].report_card
    assert Path(card_path).parent == Path(config_dir)
    assert json.loads(config_map["data"][Path(card_path).name]) == card
    # A new card means a new ConfigMap name, so the gateway pods roll onto it.
    assert config_map["metadata"]["name"] != gateway_config_map(overlay("gpu-node-pool"))["metadata"]["name"]
