"""The start-up sweep: engines a dead gateway left behind are stopped; nothing else is touched.

Real processes stand in for stale engines (each leads its own process group, as an
engine does); the pidfiles are what an engine's keeper writes (app/engines/reaper.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import psutil

from app.config.variants import parse_config
from app.engines.pidfile import sweep_stale_engines
from app.main import create_app
from tests.app.supervised import alive, fast_settings

# An "engine" with a worker in its process group, as vLLM's API server and engine core are.
ENGINE = (
    "import subprocess, sys, time\n"
    "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])\n"
    "time.sleep(120)\n"
)


def start_engine() -> tuple[subprocess.Popen, list[int]]:
    proc = subprocess.Popen([sys.executable, "-c", ENGINE], start_new_session=True)
    deadline = time.monotonic() + 10
    while not psutil.Process(proc.pid).children():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    return proc, [proc.pid] + [child.pid for child in psutil.Process(proc.pid).children()]


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def write_pidfile(work, variant, engine_pid, engine_created, gateway_pid, gateway_created):
    (work / variant).mkdir(parents=True, exist_ok=True)
    path = work / variant / "engine.pid"
    path.write_text(
        json.dumps(
            {
                "gateway_pid": gateway_pid,
                "gateway_create_time": gateway_created,
                "reaper_pid": dead_pid(),
                "reaper_create_time": 1.0,
                "engine_pid": engine_pid,
                "engine_create_time": engine_created,
                "engine_cmdline": ["python"],
            }
        )
    )
    return path


def test_an_engine_of_a_dead_gateway_is_stopped_with_its_workers(tmp_path):
    engine, group = start_engine()
    try:
        pidfile = write_pidfile(tmp_path, "a", engine.pid, psutil.Process(engine.pid).create_time(), dead_pid(), 1.0)
        assert sweep_stale_engines(tmp_path, grace=2) == [engine.pid]
        engine.wait(timeout=5)
        deadline = time.monotonic() + 5
        while any(alive(pid) for pid in group):
            assert time.monotonic() < deadline, "a worker of the stale engine survived"
            time.sleep(0.05)
        assert not pidfile.exists()
    finally:
        engine.kill()


def test_a_reused_pid_and_a_live_gateways_engine_are_left_alone(tmp_path):
    engine, group = start_engine()
    try:
        created = psutil.Process(engine.pid).create_time()
        # Same pid, another start time: the recorded engine is gone and the pid now belongs to someone else.
        reused = write_pidfile(tmp_path, "reused", engine.pid, created - 100, dead_pid(), 1.0)
        # Its gateway (this process) still runs: a second gateway on the same work dir must not stop it.
        me = psutil.Process(os.getpid())
        owned = write_pidfile(tmp_path, "owned", engine.pid, created, me.pid, me.create_time())
        assert sweep_stale_engines(tmp_path, grace=2) == []
        assert all(alive(pid) for pid in group)
        assert not reused.exists() and owned.exists()
    finally:
        os.killpg(engine.pid, 9)
        engine.wait()


async def test_the_gateway_sweeps_its_work_dir_when_it_starts(tmp_path):
    engine, group = start_engine()
    try:
        write_pidfile(tmp_path / "work", "old", engine.pid, psutil.Process(engine.pid).create_time(), dead_pid(), 1.0)
        app = create_app(
            fast_settings(work_dir=tmp_path / "work"), parse_config({"variants": {"r": {"url": "http://127.0.0.1:9"}}})
        )
        async with app.router.lifespan_context(app):
            assert not any(alive(pid) for pid in group)
    finally:
        engine.kill()
        engine.wait()
