"""The gateway tests' shared fixture: ONE real gateway with two managed vLLM CPU variants.

Starting a vLLM server takes ~30 s, so every integration test in tests/app
reuses this session's gateway. Tests marked `shuts_down_gateway` (the fault
test, which ends by stopping the gateway and looking for orphans) run last.
"""

from __future__ import annotations

import json
import secrets

import pytest
import yaml

from testkit.vllm_server import free_port
from tests.app.gateway_process import start_gateway
from tests.app.pruned_copy import make_pruned_copy

# The pruned variant's report card: its thresholds replace the defaults (a high_entropy
# threshold no top-5 distribution can exceed, so the test can tell which thresholds ran).
REPORT_CARD = {
    "schema_version": 1,
    "variant": "pruned",
    "model": "pruned",
    "base": "base",
    "tasks": {},
    "flags": {
        "low_confidence": {"signal": "mean_logprob", "direction": "below", "threshold": -1.0, "base_rate": 0.12},
        "high_entropy": {"signal": "mean_entropy", "direction": "above", "threshold": 10.0, "base_rate": 0.05},
    },
}


def pytest_configure(config):
    config.addinivalue_line("markers", "shuts_down_gateway: stops the shared gateway; runs after all others")


def pytest_collection_modifyitems(config, items):
    items.sort(key=lambda item: item.get_closest_marker("shuts_down_gateway") is not None)


@pytest.fixture(scope="session")
def gateway(tiny_qwen3_moe, tmp_path_factory):
    work = tmp_path_factory.mktemp("gateway")
    pruned = make_pruned_copy(tiny_qwen3_moe, work / "pruned")
    card = work / "report_card.json"
    card.write_text(json.dumps(REPORT_CARD))
    engine = {"kv_cache_bytes": 134217728, "max_model_len": 512}
    base_port, pruned_port = free_port(), free_port()
    # Pinned ports and keys, so tests can reach the engines directly too (tests/app/guarded_gateway.py).
    engine_keys = {
        "TEST_BASE_ENGINE_KEY": secrets.token_urlsafe(32),
        "TEST_PRUNED_ENGINE_KEY": secrets.token_urlsafe(32),
    }
    config = {
        "variants": {
            # `evaluation`: echo / prompt logprobs allowed (bounded), as lm-eval's log-likelihoods need.
            # Its engine key is pinned (not random) so that `remote` below can reach the same engine.
            "base": {
                "model": str(tiny_qwen3_moe),
                "engine": {**engine, "port": base_port},
                "max_in_flight": 6,
                "evaluation": True,
                "api_key_env": "TEST_BASE_ENGINE_KEY",
            },
            # The same engine seen as a remote server (`url:`), as a Kubernetes Service would be.
            "remote": {"url": f"http://127.0.0.1:{base_port}", "api_key_env": "TEST_BASE_ENGINE_KEY"},
            # vLLM CPU workers bind core 0 by default; put this one on core 1 to halve contention.
            "pruned": {
                "model": str(pruned),
                "base": "base",
                "report_card": str(card),
                "base_check": True,
                "api_key_env": "TEST_PRUNED_ENGINE_KEY",
                "engine": {**engine, "port": pruned_port, "env": {"VLLM_CPU_OMP_THREADS_BIND": "1"}},
            },
        },
        "experiments": {
            "ab": {"arms": {"base": 70, "pruned": 30}, "sticky": "x-session-id"},
            "consistency": {"arms": {"pruned": 100}, "self_consistency": 3},
        },
    }
    config_path = work / "variants.yaml"
    config_path.write_text(yaml.safe_dump(config))
    running = start_gateway(
        config_path,
        work,
        env={
            "MOEPRUNE_MAX_REQUEST_BYTES": "65536",
            "MOEPRUNE_MAX_TOKENS_LIMIT": "256",
            "MOEPRUNE_RESTART_BACKOFF_S": "0.5",
            "MOEPRUNE_HEALTH_INTERVAL_S": "1",
            **engine_keys,
        },
    )
    running.dirs = {"base": tiny_qwen3_moe, "pruned": pruned, "report_card": card}
    running.engines = {
        "base": (f"http://127.0.0.1:{base_port}", "TEST_BASE_ENGINE_KEY"),
        "pruned": (f"http://127.0.0.1:{pruned_port}", "TEST_PRUNED_ENGINE_KEY"),
    }
    running.engine_keys = engine_keys
    try:
        running.wait_ready(timeout=400)
        yield running
    finally:
        running.shutdown()
