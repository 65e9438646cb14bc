"""The vLLM command line and environment a managed engine gets (no engine is started here)."""

from __future__ import annotations

import pytest

from app.engines import command
from app.engines.command import EngineSpec, launch_command, launch_environment


@pytest.fixture
def cpu_build(monkeypatch):
    monkeypatch.setattr(command, "is_cpu_build", lambda: True)


def test_cpu_engines_run_their_worker_in_the_engine_core_process(cpu_build, monkeypatch, tmp_path):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(command.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    spec = EngineSpec(model="/models/m", port=9000, served_name="m", kv_cache_bytes=1024)
    cmd = launch_command(spec)
    assert cmd[cmd.index("--distributed-executor-backend") + 1] == "uni"
    assert cmd[cmd.index("--kv-cache-memory-bytes") + 1] == "1024"
    env = launch_environment(spec, tmp_path / "scratch")
    # vLLM's CPU platform falls back to a worker process unless this is off
    assert env["VLLM_ENABLE_V1_MULTIPROCESSING"] == "0"
    assert env["OMP_NUM_THREADS"] == "3"  # every core but the API server's
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert launch_environment(spec, tmp_path / "scratch")["OMP_NUM_THREADS"] == "2"  # the caller's choice wins
    assert env["TMPDIR"] == str(tmp_path / "scratch")


def test_an_executor_chosen_in_the_variant_wins(cpu_build, monkeypatch, tmp_path):
    monkeypatch.delenv("VLLM_ENABLE_V1_MULTIPROCESSING", raising=False)
    spec = EngineSpec(model="/models/m", port=9000, args=["--distributed-executor-backend=mp"])
    cmd = launch_command(spec)
    assert cmd.count("--distributed-executor-backend") == 0 and cmd[-1] == "--distributed-executor-backend=mp"
    assert "VLLM_ENABLE_V1_MULTIPROCESSING" not in launch_environment(spec, tmp_path)


def test_gpu_engines_keep_vllms_defaults(monkeypatch, tmp_path):
    monkeypatch.setattr(command, "is_cpu_build", lambda: False)
    monkeypatch.delenv("VLLM_ENABLE_V1_MULTIPROCESSING", raising=False)
    spec = EngineSpec(model="/models/m", port=9000, kv_cache_bytes=1024, gpu_memory_utilization=0.5)
    cmd = launch_command(spec)
    assert "--distributed-executor-backend" not in cmd and "--kv-cache-memory-bytes" not in cmd
    assert cmd[cmd.index("--gpu-memory-utilization") + 1] == "0.5"
    assert "VLLM_ENABLE_V1_MULTIPROCESSING" not in launch_environment(spec, tmp_path)
