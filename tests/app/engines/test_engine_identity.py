"""Engine identity: a random key per engine, probes that check it, upstream keys for url: variants.

Real keeper and engine processes (tests/support/fake_engine.py answers like vLLM with
VLLM_API_KEY set) and real loopback listeners; no vLLM is needed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys

import psutil
import pytest

from app.config.variants import parse_config
from app.engines.supervisor import build_backends
from moeprune.errors import UserError
from tests.app.supervised import engine_pid, fast_settings, supervised
from tests.support.fake_engine import EngineConfig, FakeEngine
from tests.support.loopback import serve_app

SLEEPER = f'{sys.executable} -c "import time; time.sleep(60)"'


@contextlib.contextmanager
def listener(model: str, required_key: str | None):
    """A loopback HTTP server that looks like a vLLM server of `model` (with `required_key`, if any)."""
    with serve_app(FakeEngine(EngineConfig(model=model, api_key=required_key))) as url:
        yield int(url.rsplit(":", 1)[1])


async def test_each_engine_gets_its_own_random_key_in_its_environment_only(tmp_path, monkeypatch):
    # Secrets of the gateway and a stale key from outside: none may reach an engine.
    monkeypatch.setenv("MOEPRUNE_API_KEYS", "gateway-client-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "cloud-secret")
    monkeypatch.setenv("VLLM_API_KEY", "key-from-outside")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    variants = {
        name: {"model": str(tmp_path), "engine": {"env": {"FAKE_ENGINE_ENV_DUMP": str(tmp_path / f"{name}.json")}}}
        for name in ("a", "b")
    }
    async with supervised(variants, tmp_path / "work") as (supervisor, backends):
        # Up means the probe's /v1/models passed the engine's key check.
        assert await supervisor.wait_all_up(20), {n: b.last_error for n, b in backends.items()}
        keys = {name: backend.api_key for name, backend in backends.items()}
        assert keys["a"] != keys["b"] and all(len(key) >= 32 for key in keys.values())
        for name, backend in backends.items():
            seen = json.loads((tmp_path / f"{name}.json").read_text())
            assert seen["environ"]["VLLM_API_KEY"] == keys[name]
            assert not {"MOEPRUNE_API_KEYS", "AWS_SECRET_ACCESS_KEY"} & set(seen["environ"])
            assert seen["environ"]["HF_HOME"] == str(tmp_path / "hf")
            # Never on a command line, where `ps` shows it to every local user.
            cmdlines = [psutil.Process(backend.engine.pid).cmdline(), psutil.Process(engine_pid(backend)).cmdline()]
            assert not any(keys[name] in arg for cmdline in cmdlines for arg in cmdline)


@pytest.mark.parametrize("foreign_key", [None, "an-earlier-gateways-key"], ids=["open-listener", "orphan-engine"])
async def test_a_foreign_listener_on_the_fixed_port_is_not_taken_for_the_engine(tmp_path, foreign_key):
    # The launched "engine" never listens; something else already answers on its fixed port,
    # claiming the right model name: an orphan of an earlier gateway, or any local process.
    with listener("base", foreign_key) as port:
        variants = {"base": {"model": str(tmp_path), "engine": {"port": port}}}
        async with supervised(variants, tmp_path / "work", launcher=SLEEPER) as (supervisor, backends):
            await asyncio.sleep(3)  # ~15 probe rounds
            assert backends["base"].up is False
            assert not await supervisor.wait_all_up(0.5)


async def test_url_variants_send_their_upstream_key_from_a_file_or_the_environment(tmp_path, monkeypatch):
    (tmp_path / "upstream.key").write_text("file-key\n")
    monkeypatch.setenv("TEST_UPSTREAM_KEY", "env-key")
    with listener("remote-model", "file-key") as file_port, listener("remote-model", "env-key") as env_port:
        variants = {
            "from_file": {"url": f"http://127.0.0.1:{file_port}", "api_key_file": str(tmp_path / "upstream.key")},
            "from_env": {"url": f"http://127.0.0.1:{env_port}", "api_key_env": "TEST_UPSTREAM_KEY"},
        }
        async with supervised(variants, tmp_path / "work") as (supervisor, backends):
            assert backends["from_file"].api_key == "file-key" and backends["from_env"].api_key == "env-key"
            # Up only because the probes carried the key: the servers answer 401 without it.
            assert await supervisor.wait_all_up(10), {n: b.last_error for n, b in backends.items()}
            assert backends["from_file"].served_model == "remote-model"


async def test_a_managed_variant_can_pin_its_engine_key(tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_ENGINE_KEY", "pinned-key")
    variants = {
        "a": {
            "model": str(tmp_path),
            "api_key_env": "TEST_ENGINE_KEY",
            "engine": {"env": {"FAKE_ENGINE_ENV_DUMP": str(tmp_path / "a.json")}},
        }
    }
    async with supervised(variants, tmp_path / "work") as (supervisor, backends):
        assert await supervisor.wait_all_up(20)
        assert backends["a"].api_key == "pinned-key"
        assert json.loads((tmp_path / "a.json").read_text())["environ"]["VLLM_API_KEY"] == "pinned-key"


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"api_key_file": "missing.key"}, "variants.r.api_key_file: cannot read"),
        ({"api_key_file": "empty.key"}, "is empty"),
        ({"api_key_env": "TEST_UNSET_KEY"}, "variants.r.api_key_env: environment variable TEST_UNSET_KEY is not set"),
        ({"api_key_file": "empty.key", "api_key_env": "X"}, "not both"),
    ],
)
def test_a_missing_or_empty_upstream_key_is_a_clear_error(tmp_path, monkeypatch, fields, message):
    monkeypatch.delenv("TEST_UNSET_KEY", raising=False)
    (tmp_path / "empty.key").write_text("\n")
    fields = {k: str(tmp_path / v) if k == "api_key_file" else v for k, v in fields.items()}
    config = parse_config({"variants": {"r": {"url": "http://127.0.0.1:9", **fields}}})
    with pytest.raises(UserError, match=message):
        build_backends(config, fast_settings(), tmp_path)
