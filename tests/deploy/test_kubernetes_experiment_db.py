"""The gateway's experiment state in the Kubernetes manifests: a PostgreSQL DSN from a Secret (mounted as a
file, never in the environment) for several replicas; SQLite on the pod's own volume for one."""

from __future__ import annotations

import pytest
import yaml

from tests.deploy.test_kubernetes import VALUES, by_kind, objects, renderer, validate


def write_values(tmp_path, change) -> object:
    values = yaml.safe_load(VALUES.read_text())
    change(values)
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def gateway_pod(rendered) -> dict:
    return by_kind(rendered, "Deployment")["moeprune-gateway"]["spec"]["template"]["spec"]


def test_replicas_share_the_dsn_secret_as_a_file():
    rendered = objects()
    pod = gateway_pod(rendered)
    validate(by_kind(rendered, "Deployment")["moeprune-gateway"])
    container = pod["containers"][0]
    env = {item["name"]: item.get("value") for item in container["env"]}
    mounts = {mount["name"]: mount["mountPath"] for mount in container["volumeMounts"]}
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    secret = yaml.safe_load(VALUES.read_text())["gateway"]["experimentDatabaseSecret"]
    assert volumes["experiment-db"] == {"name": "experiment-db", "secret": {"secretName": secret}}
    assert env["MOEPRUNE_EXPERIMENT_DSN_FILE"] == mounts["experiment-db"] + "/dsn"
    assert "MOEPRUNE_EXPERIMENT_DSN" not in env
    assert env["MOEPRUNE_STATE_DIR"] == mounts["state"]  # writable despite the read-only root filesystem


def test_one_replica_may_keep_sqlite_but_two_need_the_database(tmp_path):
    single = objects(write_values(tmp_path, lambda v: v["gateway"].update(replicas=1, experimentDatabaseSecret="")))
    pod = gateway_pod(single)
    assert "experiment-db" not in {volume["name"] for volume in pod["volumes"]}
    assert {"name": "state", "emptyDir": {}} in pod["volumes"]
    with pytest.raises(renderer.ValuesError, match="experimentDatabaseSecret"):
        renderer.render(write_values(tmp_path, lambda v: v["gateway"].update(experimentDatabaseSecret="")))
