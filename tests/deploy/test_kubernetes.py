"""The Kubernetes manifests: rendered from the example values and validated against Kubernetes' schemas."""

from __future__ import annotations

import copy
import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from app.config.variants import parse_config
from tests.deploy.promql import DEPLOY, alert_rules, recording_rules

KUBERNETES_VERSION = "1.30.0"
VALUES = DEPLOY / "kubernetes" / "values.yaml"
CRD_SCHEMAS = Path(__file__).resolve().parent / "schemas"


def load_renderer():
    spec = importlib.util.spec_from_file_location("moeprune_k8s_render", DEPLOY / "kubernetes" / "render.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


renderer = load_renderer()


def objects(values_path: Path = VALUES) -> list[dict]:
    # Round-trip through the YAML text, as kubectl would read it.
    return list(yaml.safe_load_all(renderer.render(values_path)))


def by_kind(rendered: list[dict], kind: str) -> dict[str, dict]:
    return {obj["metadata"]["name"]: obj for obj in rendered if obj["kind"] == kind}


def validate(obj: dict) -> None:
    if obj["apiVersion"].startswith("monitoring.coreos.com/"):
        schema = json.loads((CRD_SCHEMAS / f"{obj['kind'].lower()}.json").read_text())
        jsonschema.validate(obj, schema)
    else:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def test_every_object_validates_against_the_kubernetes_schemas():
    rendered = objects()
    # The example names an existing key Secret (keys never live in the values file), so none is rendered.
    assert {obj["kind"] for obj in rendered} == {"Deployment", "Service", "ConfigMap", "NetworkPolicy",
                                                 "ServiceMonitor", "PrometheusRule"}
    for obj in rendered:
        validate(obj)


def test_validation_is_strict():
    """A misspelt field or a wrong type is caught, for core kinds and for the CRDs."""
    rendered = objects()
    deployment = copy.deepcopy(by_kind(rendered, "Deployment")["moeprune-gateway"])
    deployment["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(deployment)
    monitor = copy.deepcopy(by_kind(rendered, "ServiceMonitor")["moeprune-vllm"])
    monitor["spec"]["endpoints"][0]["interval"] = "fifteen seconds"
    with pytest.raises(jsonschema.ValidationError):
        validate(monitor)


def test_each_variant_is_a_gpu_vllm_deployment_with_a_service():
    rendered = objects()
    deployments, services = by_kind(rendered, "Deployment"), by_kind(rendered, "Service")
    values = yaml.safe_load(VALUES.read_text())
    assert set(values["variants"]) == {"base", "pruned-50"}
    for variant, spec in values["variants"].items():
        deployment = deployments[f"moeprune-vllm-{variant}"]
        pod = deployment["spec"]["template"]["spec"]
        container = pod["containers"][0]
        assert container["image"] == values["vllm"]["image"]
        assert container["args"][0] == spec["model"]
        assert container["args"][container["args"].index("--served-model-name") + 1] == variant
        assert container["resources"]["limits"]["nvidia.com/gpu"] == spec["gpus"]
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert container[probe]["httpGet"] == {"path": "/health", "port": "http"}
        claim = next(volume for volume in pod["volumes"] if "persistentVolumeClaim" in volume)
        assert claim["persistentVolumeClaim"]["claimName"] == values["modelVolume"]["claimName"]
        mount = next(m for m in container["volumeMounts"] if m["name"] == claim["name"])
        assert mount["readOnly"] is True
        service = services[f"moeprune-vllm-{variant}"]
        assert service["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
        assert service["spec"]["ports"][0]["targetPort"] in {port["name"] for port in container["ports"]}


def test_gateway_routes_every_variant_to_its_engine_service():
    rendered = objects()
    config = by_kind(rendered, "ConfigMap")["moeprune-gateway"]
    variants_yaml = yaml.safe_load(config["data"]["variants.yaml"])
    gateway_config = parse_config(variants_yaml, "rendered variants.yaml")  # the gateway's own validation
    services, namespace = by_kind(rendered, "Service"), rendered[0]["metadata"]["namespace"]
    for name, variant in gateway_config.variants.items():
        service = services[f"moeprune-vllm-{name}"]
        port = service["spec"]["ports"][0]["port"]
        assert variant.url == f"http://moeprune-vllm-{name}.{namespace}.svc:{port}"
        assert variant.served_model_name == name
    assert gateway_config.variants["pruned-50"].base == "base"
    assert gateway_config.experiments["ab"].arms == {"base": 50, "pruned-50": 50}


def test_gateway_deployment_mounts_its_config_and_api_key_secret():
    rendered = objects()
    gateway = by_kind(rendered, "Deployment")["moeprune-gateway"]
    pod = gateway["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert pod["securityContext"]["runAsNonRoot"] is True
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    assert volumes["config"]["configMap"]["name"] in by_kind(rendered, "ConfigMap")
    existing = yaml.safe_load(VALUES.read_text())["gateway"]["existingSecret"]
    assert volumes["api-keys"]["secret"]["secretName"] == existing
    mounts = {mount["name"]: mount["mountPath"] for mount in container["volumeMounts"]}
    env = {item["name"]: item["value"] for item in container["env"]}
    assert env["MOEPRUNE_API_KEYS_FILE"].startswith(mounts["api-keys"] + "/")
    config_arg = container["args"][container["args"].index("--config") + 1]
    assert config_arg == mounts["config"] + "/variants.yaml"


def test_service_monitors_select_the_rendered_services():
    rendered = objects()
    services = by_kind(rendered, "Service")
    for monitor in by_kind(rendered, "ServiceMonitor").values():
        selected = [service for service in services.values()
                    if monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()]
        assert selected, monitor["metadata"]["name"]
        for service in selected:
            assert monitor["spec"]["endpoints"][0]["port"] in {port["name"] for port in service["spec"]["ports"]}
        assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    engines = by_kind(rendered, "ServiceMonitor")["moeprune-vllm"]
    relabel = engines["spec"]["endpoints"][0]["relabelings"][0]
    assert relabel["targetLabel"] == "variant"
    # Prometheus turns the Service label moeprune.io/variant into this meta label.
    assert relabel["sourceLabels"] == ["__meta_kubernetes_service_label_moeprune_io_variant"]
    assert all("moeprune.io/variant" in services[f"moeprune-vllm-{v}"]["metadata"]["labels"]
               for v in ("base", "pruned-50"))


def test_prometheus_rule_passes_promtool(tmp_path):
    rule = by_kind(objects(), "PrometheusRule")["moeprune"]
    rule_file = tmp_path / "rules.yml"
    rule_file.write_text(yaml.safe_dump(rule["spec"]))
    result = subprocess.run([shutil.which("promtool") or "promtool", "check", "rules", str(rule_file)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(recording_rules()) + len(alert_rules())} rules found" in result.stdout  # every shipped rule


def test_dashboard_config_map_is_labelled_for_the_grafana_sidecar():
    config = by_kind(objects(), "ConfigMap")["moeprune-dashboard"]
    assert config["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(config["data"]["moeprune.json"])
    uids = {panel["datasource"]["uid"] for panel in dashboard["panels"] if "datasource" in panel}
    assert uids == {"prometheus"}  # the values' grafanaDatasourceUid


def write_values(tmp_path: Path, change) -> Path:
    values = yaml.safe_load(VALUES.read_text())
    change(values)
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def test_keys_listed_in_the_values_render_a_secret_the_gateway_accepts(tmp_path):
    from app.config.settings import read_keys_file

    rendered = objects(write_values(tmp_path, lambda v: v["gateway"].update(existingSecret="", apiKeys=["k1", "k2"])))
    secret = by_kind(rendered, "Secret")["moeprune-gateway-api-keys"]
    validate(secret)
    (tmp_path / "api_keys").write_text(secret["stringData"]["api_keys"])
    assert read_keys_file(tmp_path / "api_keys") == {"k1", "k2"}
    pod = by_kind(rendered, "Deployment")["moeprune-gateway"]["spec"]["template"]["spec"]
    assert {"name": "api-keys", "secret": {"secretName": "moeprune-gateway-api-keys"}} in pod["volumes"]


@pytest.mark.parametrize("change", [
    lambda v: v["gateway"].update(existingSecret="", apiKeys=[]),
    lambda v: [v["gateway"].pop(key) for key in ("existingSecret", "apiKeys")],
], ids=["empty", "absent"])
def test_values_without_keys_do_not_render_an_open_gateway(tmp_path, change):
    with pytest.raises(renderer.ValuesError, match="an open gateway is not rendered"):
        renderer.render(write_values(tmp_path, change))


def test_only_the_gateway_and_prometheus_may_reach_the_engines():
    rendered = objects()
    policy = by_kind(rendered, "NetworkPolicy")["moeprune-vllm"]
    selector = policy["spec"]["podSelector"]["matchLabels"]
    pods = {name: d["spec"]["template"]["metadata"]["labels"] for name, d in by_kind(rendered, "Deployment").items()}
    assert {name for name, pod_labels in pods.items() if selector.items() <= pod_labels.items()} == \
        {"moeprune-vllm-base", "moeprune-vllm-pruned-50"}
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    (rule,) = policy["spec"]["ingress"]
    gateway_peer, prometheus_peer = rule["from"]
    assert gateway_peer == {"podSelector": {"matchLabels": pods["moeprune-gateway"]}}
    assert "namespaceSelector" not in gateway_peer  # gateway pods of this namespace only
    assert prometheus_peer["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}
    engine_port = by_kind(rendered, "Service")["moeprune-vllm-base"]["spec"]["ports"][0]["port"]
    assert rule["ports"] == [{"protocol": "TCP", "port": engine_port}]


def test_report_cards_and_existing_secrets(tmp_path):
    values = yaml.safe_load(VALUES.read_text())
    (tmp_path / "card.json").write_text(json.dumps({"flags": {"low_confidence": {"base_rate": 0.2}}}))
    values["variants"]["pruned-50"]["reportCard"] = "card.json"
    values["gateway"]["existingSecret"] = "my-keys"
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    rendered = objects(path)
    assert "Secret" not in {obj["kind"] for obj in rendered}
    gateway = by_kind(rendered, "Deployment")["moeprune-gateway"]["spec"]["template"]["spec"]
    assert any(volume.get("secret", {}).get("secretName") == "my-keys" for volume in gateway["volumes"])
    config = by_kind(rendered, "ConfigMap")["moeprune-gateway"]
    card_path = yaml.safe_load(config["data"]["variants.yaml"])["variants"]["pruned-50"]["report_card"]
    items = next(v for v in gateway["volumes"] if v["name"] == "config")["configMap"]["items"]
    mounted = {"/etc/moeprune/" + item["path"]: item["key"] for item in items}
    assert json.loads(config["data"][mounted[card_path]])["flags"]["low_confidence"]["base_rate"] == 0.2


@pytest.mark.parametrize("change, message", [
    (lambda v: v["variants"]["pruned-50"].update(base="nope"), "variants.pruned-50.base"),
    (lambda v: v["variants"].update({"Pruned_50": {"model": "/m"}}), "variants.Pruned_50"),
    (lambda v: v["experiments"]["ab"]["arms"].update(ghost=1), "experiments.ab.arms"),
    (lambda v: v.pop("vllm"), "missing vllm"),
])
def test_bad_values_name_the_field(tmp_path, change, message):
    values = yaml.safe_load(VALUES.read_text())
    change(values)
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    with pytest.raises(renderer.ValuesError, match=message):
        renderer.render(path)


def test_command_line_prints_manifests_and_reports_bad_values(tmp_path):
    script = DEPLOY / "kubernetes" / "render.py"
    good = subprocess.run([sys.executable, str(script), str(VALUES)], capture_output=True, text=True, timeout=60)
    assert good.returncode == 0, good.stderr
    assert len(list(yaml.safe_load_all(good.stdout))) == len(objects())
    bad_values = tmp_path / "values.yaml"
    bad_values.write_text("namespace: x\n")
    bad = subprocess.run([sys.executable, str(script), str(bad_values)], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "missing gateway" in bad.stderr and not bad.stdout
