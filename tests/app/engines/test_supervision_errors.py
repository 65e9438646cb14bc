"""Engine failures: start failures reported, launch failures retried, hung engines restarted, logs rotated.

Uses launchers that fail like a broken engine would, or a stand-in engine
(tests/support/fake_engine.py), so no vLLM is needed.
"""

from __future__ import annotations

import os
import signal
import sys
import time

import httpx
import psutil
import pytest

from app.config.variants import parse_config
from app.main import create_app
from moeprune.errors import UserError
from tests.app.gateway_process import start_gateway
from tests.app.supervised import alive, engine_pid, eventually, fast_settings, supervised, supervisor_log

BROKEN_LAUNCHER = f"{sys.executable} -c \"import sys; print('CUDA out of memory (simulated)'); sys.exit(3)\""


def test_failed_engine_start_is_reported_and_requests_get_503(tmp_path):
    (tmp_path / "ckpt").mkdir()
    config = tmp_path / "variants.yaml"
    config.write_text("variants:\n  broken:\n    model: ckpt\n")
    gateway = start_gateway(
        config, tmp_path, env={"MOEPRUNE_LAUNCHER": BROKEN_LAUNCHER, "MOEPRUNE_RESTART_BACKOFF_S": "5"}
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                # Details (the error, quoting the log) only to a caller with a key.
                ready = httpx.get(gateway.url + "/ready", headers=gateway.headers, timeout=5)
                if "CUDA out of memory" in ready.text:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, gateway.log_tail()
            time.sleep(0.3)
        assert httpx.get(gateway.url + "/health", timeout=5).status_code == 200
        assert ready.status_code == 503
        state = ready.json()["variants"][0]
        assert state["up"] is False and "exited with code 3" in state["error"]
        response = httpx.post(
            gateway.url + "/v1/completions",
            headers=gateway.headers,
            timeout=10,
            json={"model": "broken", "prompt": "x", "max_tokens": 2},
        )
        assert response.status_code == 503 and response.headers["retry-after"] == "5"
        assert response.json()["error"]["code"] == "engine_unavailable"
        assert "engine failed to start" in gateway.log_tail()
    finally:
        gateway.shutdown()


# In-process supervision with real keeper and engine processes (tests/support/fake_engine.py).


async def test_a_launch_failure_in_a_watch_task_is_logged_and_retried(tmp_path):
    async with supervised({"a": {"model": str(tmp_path)}}, tmp_path / "work") as (supervisor, backends):
        assert await supervisor.wait_all_up(20)
        backend = backends["a"]
        log_path = backend.engine.log_path
        # The next launch cannot open the engine log (as with a full or read-only disk): it raises.
        log_path.rename(log_path.with_name("engine.log.old"))
        log_path.mkdir()
        with supervisor_log() as records:
            os.kill(engine_pid(backend), signal.SIGKILL)
            await eventually(lambda: "engine launch failed" in records.events(), 10, "the failed launch logged")
            assert backend.up is False and "engine launch failed" in backend.last_error
            log_path.rmdir()  # the disk is fixed: the watch task is still there and retries
            await eventually(lambda: backend.up, 20, "the variant up again")
        assert backend.restarts >= 2


async def test_a_hung_engine_is_killed_and_restarted(tmp_path):
    async with supervised({"a": {"model": str(tmp_path)}}, tmp_path / "work", engine_hung_after_s=2) as (
        supervisor,
        backends,
    ):
        assert await supervisor.wait_all_up(20)
        backend = backends["a"]
        hung = engine_pid(backend)
        with supervisor_log() as records:
            os.kill(hung, signal.SIGSTOP)  # alive, but answers nothing
            await eventually(lambda: backend.restarts == 1 and backend.up, 30, "restarted and up")
        assert "engine hung; killing it" in records.events()
        assert engine_pid(backend) != hung
        await eventually(lambda: not alive(hung), 5, "the hung engine gone")


async def test_a_second_variant_that_cannot_launch_stops_the_first(tmp_path):
    (tmp_path / "ckpt").mkdir()
    work = tmp_path / "work"
    work.mkdir()
    (work / "second").write_text("a file where the variant's work dir must go")
    config = parse_config(
        {"variants": {"first": {"model": str(tmp_path / "ckpt")}, "second": {"model": str(tmp_path / "ckpt")}}}
    )
    app = create_app(fast_settings(work_dir=work), config)
    with pytest.raises(UserError, match="cannot start the engine of variant 'second'"):
        async with app.router.lifespan_context(app):
            pass
    # Every process started for this work dir (the first variant's keeper and engine) is gone.
    await eventually(lambda: not processes_mentioning(str(work)), 10, "no process of this gateway left")


def processes_mentioning(marker: str) -> list[int]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        if any(marker in arg for arg in proc.info["cmdline"] or ()) and alive(proc.pid):
            found.append(proc.pid)
    return found


async def test_the_engine_log_is_rotated_keeping_one_old_file(tmp_path):
    variants = {"a": {"model": str(tmp_path), "engine": {"env": {"FAKE_ENGINE_LOG_BYTES": "400000"}}}}
    async with supervised(variants, tmp_path / "work", engine_log_max_bytes=8192) as (supervisor, backends):
        assert await supervisor.wait_all_up(20)
        engine = backends["a"].engine
        log_path = engine.log_path
        # The last line may sit in either file, depending on where the last rotation fell.
        await eventually(lambda: "fake engine serving" in engine.log_tail(), 10, "log written")
        old = log_path.with_name("engine.log.1")
        assert old.exists() and not log_path.with_name("engine.log.2").exists()
        assert log_path.stat().st_size + old.stat().st_size < 200_000  # the oldest lines were dropped


async def test_stopping_escalates_to_sigkill_for_an_engine_that_ignores_sigterm(tmp_path):
    variants = {
        "a": {
            "model": str(tmp_path),
            "engine": {"env": {"FAKE_ENGINE_IGNORE_TERM": "1", "FAKE_ENGINE_CHILD": str(tmp_path / "child")}},
        }
    }
    async with supervised(variants, tmp_path / "work") as (supervisor, backends):
        assert await supervisor.wait_all_up(20)
        pids = [engine_pid(backends["a"]), int((tmp_path / "child").read_text()), backends["a"].engine.pid]
        started = time.monotonic()
    assert not any(alive(pid) for pid in pids)
    assert time.monotonic() - started < 2 + 4  # the stop grace plus a margin
