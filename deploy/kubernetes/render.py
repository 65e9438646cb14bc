"""Render the Kubernetes manifests for a set of variants from a values file.

    python deploy/kubernetes/render.py deploy/kubernetes/values.yaml > moeprune.yaml
    python deploy/kubernetes/render.py deploy/kubernetes/values.yaml | kubectl apply -f -

Why a small Python renderer rather than a Helm chart: the objects per variant
are generated from a list (one engine Deployment + Service each, plus the
gateway's variants.yaml that must agree with them), the rules and dashboard are
embedded from the compose files, and no Helm binary is installable from the
package registries this project may use, so a chart could not be rendered or
validated in CI. This needs only Python and PyYAML, which the project has.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from k8s_engines import engine_deployment, engine_service  # noqa: E402
from k8s_gateway import api_key_secret, config_map, gateway_deployment, gateway_service  # noqa: E402
from k8s_monitoring import monitoring_objects  # noqa: E402
from k8s_network import engine_network_policy  # noqa: E402

# Variant names become Service names (moeprune-vllm-NAME): DNS-1035 labels.
NAME_PATTERN = re.compile(r"^[a-z]([-a-z0-9]{0,46}[a-z0-9])?$")
REQUIRED = ("namespace", "gateway", "vllm", "modelVolume", "variants", "monitoring")


class ValuesError(ValueError):
    """A values file that cannot be rendered; the message names the field and the fix."""


def check_values(values: object, source: str) -> dict:
    if not isinstance(values, dict):
        raise ValuesError(f"{source}: expected a mapping with {', '.join(REQUIRED)}")
    missing = [key for key in REQUIRED if key not in values]
    if missing:
        raise ValuesError(f"{source}: missing {', '.join(missing)}; see deploy/kubernetes/values.yaml")
    if not values["variants"]:
        raise ValuesError(f"{source}: variants: name at least one variant")
    for name, spec in values["variants"].items():
        if not NAME_PATTERN.match(name):
            raise ValuesError(f"{source}: variants.{name}: use lowercase letters, digits and '-' "
                              "(it becomes a Service name)")
        if not isinstance(spec, dict) or not spec.get("model"):
            raise ValuesError(f"{source}: variants.{name}.model: give the checkpoint path inside the model volume")
        if spec.get("base") and spec["base"] not in values["variants"]:
            raise ValuesError(f"{source}: variants.{name}.base: unknown variant {spec['base']!r}")
    gateway = values["gateway"]
    if not gateway.get("existingSecret") and not gateway.get("apiKeys"):
        # The gateway would refuse to start anyway (no keys on 0.0.0.0); say so at render time.
        raise ValuesError(f"{source}: gateway: set existingSecret (a Secret with key `api_keys`, one key per "
                          "line) or list apiKeys; an open gateway is not rendered")
    if int(gateway.get("replicas", 1)) > 1 and not gateway.get("experimentDatabaseSecret"):
        raise ValuesError(f"{source}: gateway.experimentDatabaseSecret: {gateway['replicas']} replicas need a shared "
                          "PostgreSQL database for experiment state (a Secret with key `dsn`), or each pod reports "
                          "only its own share; or set replicas: 1")
    for name, experiment in (values.get("experiments") or {}).items():
        unknown = sorted(set(experiment.get("arms", {})) - set(values["variants"]))
        if unknown:
            raise ValuesError(f"{source}: experiments.{name}.arms: unknown variants {', '.join(unknown)}")
    return values


def render_objects(values_path: str | Path) -> list[dict]:
    values_path = Path(values_path)
    values = check_values(yaml.safe_load(values_path.read_text()), str(values_path))
    config = config_map(values, values_path.parent)
    objects: list[dict] = []
    for name, spec in values["variants"].items():
        objects += [engine_deployment(name, spec, values), engine_service(name, values)]
    secret = api_key_secret(values)
    objects += [config, *([secret] if secret else []), gateway_deployment(values, config), gateway_service(values)]
    policy = engine_network_policy(values)
    objects += [policy] if policy else []
    return objects + monitoring_objects(values)


def render(values_path: str | Path) -> str:
    return yaml.safe_dump_all(render_objects(values_path), sort_keys=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Render moe-prune-serve's Kubernetes manifests.")
    parser.add_argument("values", help="values file, e.g. deploy/kubernetes/values.yaml")
    args = parser.parse_args(argv)
    try:
        sys.stdout.write(render(args.values))
    except (OSError, ValuesError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
