"""The one-host compose file: parses, and everything it names exists (files, services, volumes, secrets)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from app.config.settings import read_keys_file
from app.config.variants import parse_config
from moeprune.errors import UserError
from testkit.promql import DEPLOY, ROOT

COMPOSE_DIR = DEPLOY / "compose"
COMPOSE = COMPOSE_DIR / "docker-compose.yml"


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def interpolate(value: str) -> str | None:
    """Compose's ${VAR:-default}; None for a ${VAR:?error} the user must set."""
    if re.search(r"\$\{\w+:\?", value):
        return None
    return re.sub(r"\$\{(\w+):-([^}]*)\}", lambda m: m.group(2), value)


def bind_sources(service: dict) -> list[str]:
    """Host paths of a service's bind mounts (named volumes excluded)."""
    sources = []
    for volume in service.get("volumes", []):
        resolved = interpolate(volume)
        if resolved is None:
            continue
        source = resolved.split(":")[0]
        if source.startswith((".", "/")):
            sources.append(source)
    return sources


def test_compose_parses_with_the_expected_services():
    services = compose()["services"]
    assert {"gateway", "prometheus", "grafana", "dcgm-exporter"} <= set(services)
    assert services["dcgm-exporter"]["profiles"] == ["gpu"], "DCGM is optional"


def test_every_referenced_file_exists():
    data = compose()
    checked = 0
    for name, service in data["services"].items():
        for source in bind_sources(service):
            assert (COMPOSE_DIR / source).exists(), f"{name} mounts {source}, which does not exist"
            checked += 1
        build = service.get("build")
        if build:
            context = COMPOSE_DIR / build["context"]
            assert (context / build.get("dockerfile", "Dockerfile")).is_file()
    for name, secret in data.get("secrets", {}).items():
        source = interpolate(secret["file"])
        assert source is None or (COMPOSE_DIR / source).is_file(), f"secret {name}"
    assert checked >= 5


def test_compose_never_brings_up_an_open_gateway():
    """No keys file by default (compose stops with a message), the example file is refused by the
    gateway itself, and the gateway is published on loopback unless an address is chosen."""
    data = compose()
    keys_file = data["secrets"]["moeprune_api_keys"]["file"]
    assert interpolate(keys_file) is None and "API_KEYS_FILE" in keys_file
    gateway = data["services"]["gateway"]
    assert gateway["environment"]["MOEPRUNE_API_KEYS_FILE"] == "/run/secrets/moeprune_api_keys"
    assert "MOEPRUNE_ALLOW_UNAUTHENTICATED" not in gateway["environment"]
    assert interpolate(gateway["ports"][0]).startswith("127.0.0.1:")
    with pytest.raises(UserError, match="holds no keys"):
        read_keys_file(COMPOSE_DIR / "api_keys.example.txt")


def test_services_volumes_and_secrets_resolve():
    data = compose()
    services = data["services"]
    for name, service in services.items():
        for dependency in service.get("depends_on", []):
            assert dependency in services, f"{name} depends on unknown {dependency}"
        mode = service.get("network_mode", "")
        if mode.startswith("service:"):
            assert mode.split(":", 1)[1] in services
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if not source.startswith((".", "/", "$")):  # a named volume
                assert source in data["volumes"], f"{name} uses undeclared volume {source}"
        for secret in service.get("secrets", []):
            assert secret in data["secrets"]


def test_images_are_pinned():
    for name, service in compose()["services"].items():
        image = service.get("image", "")
        assert ":" in image and not image.endswith(":latest"), f"{name}: pin {image!r}"


def test_prometheus_and_grafana_get_the_shipped_configuration():
    services = compose()["services"]
    mounts = {volume.split(":")[1]: volume.split(":")[0] for volume in services["prometheus"]["volumes"]}
    assert (
        Path(COMPOSE_DIR / mounts["/etc/prometheus/prometheus.yml"]).resolve()
        == DEPLOY / "prometheus" / "prometheus.yml"
    )
    grafana = {volume.split(":")[1]: volume.split(":")[0] for volume in services["grafana"]["volumes"]}
    assert (COMPOSE_DIR / grafana["/etc/grafana/provisioning"] / "datasources").is_dir()
    dashboards = yaml.safe_load((DEPLOY / "grafana/provisioning/dashboards/moeprune.yml").read_text())
    dashboard_path = dashboards["providers"][0]["options"]["path"]
    assert (COMPOSE_DIR / grafana[dashboard_path] / "moeprune.json").is_file()


def test_example_variants_are_accepted_by_the_gateway_and_match_the_scrape_config():
    variants = yaml.safe_load((COMPOSE_DIR / "variants.example.yaml").read_text())
    config = parse_config(variants, "variants.example.yaml")
    prometheus = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    engine_job = next(job for job in prometheus["scrape_configs"] if job["job_name"] == "vllm")
    scraped = {
        group["labels"]["variant"]: int(group["targets"][0].rsplit(":", 1)[1]) for group in engine_job["static_configs"]
    }
    assert scraped == {name: variant.engine.port for name, variant in config.variants.items()}
    gateway_port = int(compose()["services"]["gateway"]["ports"][0].split(":")[-1])
    gateway_job = next(job for job in prometheus["scrape_configs"] if job["job_name"] == "moeprune-gateway")
    assert gateway_job["static_configs"][0]["targets"] == [f"localhost:{gateway_port}"]
    assert (ROOT / "deploy/compose/api_keys.example.txt").is_file()
