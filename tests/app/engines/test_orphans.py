"""Engines never outlive the gateway: SIGKILL, double Ctrl-C, a failing start, a hung engine.

`moeprune serve` runs as a real subprocess and is stopped with real signals. The
slow tests run real vLLM CPU engines; the fast ones use the stand-in engine
(tests/support/fake_engine.py) where a behaviour vLLM does not have is needed (an
engine that ignores SIGTERM). Every wait is bounded.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import socket
import tempfile
import time
from pathlib import Path

import httpx
import psutil
import pytest
import yaml

from tests.app.gateway_process import RunningGateway, start_gateway
from tests.app.supervised import FAKE_LAUNCHER, alive

ENGINE = {"kv_cache_bytes": 134217728, "max_model_len": 512}
FAST_SUPERVISION = {
    "MOEPRUNE_HEALTH_INTERVAL_S": "1",
    "MOEPRUNE_RESTART_BACKOFF_S": "0.5",
    "MOEPRUNE_ENGINE_STOP_GRACE_S": "5",
}


def write_config(path, variants: dict):
    path.write_text(yaml.safe_dump({"variants": variants}))
    return path


def wait_gone(pids: list[int], timeout: float) -> list[int]:
    """The pids still alive after waiting up to `timeout` for them all to end."""
    deadline = time.monotonic() + timeout
    while (left := [pid for pid in pids if alive(pid)]) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


def processes_mentioning(marker: str) -> list[int]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):
            if any(marker in arg for arg in proc.info["cmdline"] or ()) and alive(proc.pid):
                found.append(proc.pid)
    return found


def restarts(gateway: RunningGateway) -> float:
    text = httpx.get(gateway.url + "/metrics", timeout=10).text
    for line in text.splitlines():
        if line.startswith("moeprune_backend_restarts_total{"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.fixture
def ignoring_engine_gateway(tmp_path):
    """A gateway whose one engine ignores SIGTERM and has a worker in its process group."""
    (tmp_path / "ckpt").mkdir()
    config = write_config(
        tmp_path / "variants.yaml",
        {
            "a": {
                "model": str(tmp_path / "ckpt"),
                "engine": {"env": {"FAKE_ENGINE_IGNORE_TERM": "1", "FAKE_ENGINE_CHILD": str(tmp_path / "child.pid")}},
            }
        },
    )
    env = {"MOEPRUNE_LAUNCHER": FAKE_LAUNCHER, **FAST_SUPERVISION, "MOEPRUNE_ENGINE_STOP_GRACE_S": "2"}
    gateway = start_gateway(config, tmp_path, env=env)
    try:
        gateway.wait_ready(timeout=60)
        yield gateway, env
    finally:
        gateway.shutdown(timeout=30)


def test_sigkill_of_the_gateway_stops_even_an_engine_that_ignores_sigterm(ignoring_engine_gateway):
    gateway, _ = ignoring_engine_gateway
    pids = [p.pid for p in gateway.descendants()]
    assert len(pids) >= 2  # the engine and its worker (and, now, its keeper)
    gateway.proc.send_signal(signal.SIGKILL)
    gateway.proc.wait(timeout=10)
    assert not wait_gone(pids, timeout=2 + 8), "engine processes outlived the SIGKILLed gateway"


def test_the_next_gateway_stops_an_engine_whose_gateway_and_keeper_were_killed(ignoring_engine_gateway, tmp_path):
    gateway, env = ignoring_engine_gateway
    engine = gateway.engine_roots()["a"]
    keeper = engine.parent()
    stale = [engine.pid, int((tmp_path / "child.pid").read_text())]
    # Both die at once (e.g. the OOM killer takes the keeper too): nothing is left to stop the engine,
    # which ignores the SIGTERM its parent-death signal sends.
    gateway.proc.send_signal(signal.SIGKILL)
    keeper.kill()
    gateway.proc.wait(timeout=10)
    time.sleep(1)
    assert all(alive(pid) for pid in stale), "the set-up did not leave a stale engine"
    assert (tmp_path / "engines" / "a" / "engine.pid").exists()
    (tmp_path / "second").mkdir()
    second = start_gateway(
        gateway.config_path, tmp_path / "second", env={**env, "MOEPRUNE_WORK_DIR": str(tmp_path / "engines")}
    )  # the same work dir
    try:
        second.wait_ready(timeout=60)
        assert not wait_gone(stale, timeout=5), "the stale engine survived the next gateway's start"
        assert "stopping a stale engine left by a previous gateway" in second.log_tail(20000)
    finally:
        second.shutdown(timeout=30)


# Real vLLM CPU engines from here on.


@pytest.fixture
def short_dir():
    """A work dir with a short path: vLLM's ZMQ socket paths under it must stay below 107 characters."""
    path = Path(tempfile.mkdtemp(prefix="mp-orphans-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def vllm_gateway(tiny_qwen3_moe, tmp_path, short_dir):
    """A gateway with one managed vLLM engine (`a`), ready; stopped (or found dead) at the end."""
    config = write_config(tmp_path / "variants.yaml", {"a": {"model": str(tiny_qwen3_moe), "engine": ENGINE}})
    gateway = start_gateway(
        config,
        tmp_path,
        env={**FAST_SUPERVISION, "MOEPRUNE_ENGINE_HUNG_AFTER_S": "6", "MOEPRUNE_WORK_DIR": str(short_dir)},
    )
    try:
        gateway.wait_ready(timeout=240)
        yield gateway
    finally:
        gateway.shutdown(timeout=60)


@pytest.mark.slow
def test_sigkill_of_the_gateway_leaves_no_vllm_engine(vllm_gateway):
    gateway = vllm_gateway
    engine = gateway.engine_roots()["a"]
    pids = [p.pid for p in gateway.descendants()]
    cmdline, environ = engine.cmdline(), engine.environ()
    port = cmdline[cmdline.index("--port") + 1]
    # Identity: the engine answers /v1 only to the gateway's random key, which is in its environment only.
    unauthenticated = httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=10).status_code
    with_key = httpx.get(
        f"http://127.0.0.1:{port}/v1/models",
        timeout=10,
        headers={"Authorization": f"Bearer {environ.get('VLLM_API_KEY')}"},
    ).json()
    # vLLM itself leaves its other routes open (/invocations runs a completion); the engine guard closes them.
    completion = {"model": "a", "prompt": "The kidney", "max_tokens": 2}
    invocations = httpx.post(f"http://127.0.0.1:{port}/invocations", json=completion, timeout=30).status_code
    tokenize = httpx.post(
        f"http://127.0.0.1:{port}/tokenize", json={"model": "a", "prompt": "x"}, timeout=30
    ).status_code
    invocations_with_key = httpx.post(
        f"http://127.0.0.1:{port}/invocations",
        json=completion,
        timeout=30,
        headers={"Authorization": f"Bearer {environ.get('VLLM_API_KEY')}"},
    ).status_code
    health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=10).status_code

    gateway.proc.send_signal(signal.SIGKILL)
    gateway.proc.wait(timeout=10)
    assert not wait_gone(pids, timeout=30), "vLLM processes outlived the SIGKILLed gateway"

    assert unauthenticated == 401 and [m["id"] for m in with_key["data"]] == ["a"]
    assert (invocations, tokenize, invocations_with_key, health) == (401, 401, 200, 200)
    assert "MOEPRUNE_API_KEYS" not in environ and len(environ["VLLM_API_KEY"]) >= 32
    assert not any(environ["VLLM_API_KEY"] in arg for arg in cmdline)


@pytest.mark.slow
def test_double_ctrl_c_leaves_no_vllm_engine(vllm_gateway, presses=2):
    gateway = vllm_gateway
    pids = [p.pid for p in gateway.descendants()]
    # A request still receiving its body holds the graceful shutdown open; the impatient
    # second Ctrl-C makes uvicorn skip the lifespan shutdown. (With uvicorn 0.54 on Python 3.11
    # asyncio's final task cancellation still ran the lifespan's cleanup before this work, also
    # after a third press: this guards serve()'s own stop and the keepers, it did not fail before.)
    port = int(gateway.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
        client.sendall(
            b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer " + gateway.api_key.encode() + b"\r\nContent-Length: 500\r\n\r\n{"
        )
        time.sleep(0.5)
        gateway.proc.send_signal(signal.SIGINT)
        time.sleep(1.0)
        for _ in range(presses - 1):
            gateway.proc.send_signal(signal.SIGINT)
            time.sleep(0.3)
        gateway.proc.wait(timeout=60)
    assert not wait_gone(pids, timeout=30), f"vLLM processes outlived the gateway after {presses} Ctrl-C"


@pytest.mark.slow
def test_a_second_variant_that_cannot_start_stops_the_first_and_the_gateway_says_why(
    tiny_qwen3_moe, tmp_path, short_dir
):
    work = short_dir
    (work / "second").write_text("a file where the second variant's work dir must go")
    config = write_config(
        tmp_path / "variants.yaml",
        {
            "first": {"model": str(tiny_qwen3_moe), "engine": ENGINE},
            "second": {"model": str(tiny_qwen3_moe), "engine": ENGINE},
        },
    )
    gateway = start_gateway(config, tmp_path, env={**FAST_SUPERVISION, "MOEPRUNE_WORK_DIR": str(work)})
    try:
        code = gateway.proc.wait(timeout=120)
    finally:
        gateway.shutdown(timeout=30)
    assert code != 0
    assert "cannot start the engine of variant 'second'" in gateway.log_tail(20000)
    assert not wait_gone(processes_mentioning(str(work)), timeout=30), "the first variant's engine was orphaned"


@pytest.mark.slow
def test_a_sigstopped_vllm_engine_is_killed_and_restarted(vllm_gateway):
    gateway = vllm_gateway
    hung = gateway.engine_roots()["a"]
    hung_tree = [hung.pid] + [p.pid for p in hung.children(recursive=True)]
    hung.send_signal(signal.SIGSTOP)  # alive, holding its memory, answering nothing
    deadline = time.monotonic() + 300
    while restarts(gateway) < 1 or httpx.get(gateway.url + "/ready", timeout=10).status_code != 200:
        assert time.monotonic() < deadline, gateway.log_tail()
        time.sleep(1)
    assert gateway.engine_roots()["a"].pid != hung.pid
    assert not wait_gone(hung_tree, timeout=10), "the hung engine was left running"
    assert '"event": "engine hung; killing it"' in gateway.log_tail(50000)
    response = httpx.post(
        gateway.url + "/v1/completions",
        headers=gateway.headers,
        timeout=60,
        json={"model": "a", "prompt": "The kidney", "max_tokens": 3},
    )
    assert response.status_code == 200, response.text
    assert json.loads(response.text)["choices"]
