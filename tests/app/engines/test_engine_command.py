"""The vLLM command line and environment a managed engine gets (no engine is started here)."""

from __future__ import annotations

import os

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


def test_engines_inherit_an_allowlisted_environment_and_the_gateways_key_only(monkeypatch, tmp_path):
    for name, value in {
        "MOEPRUNE_API_KEYS": "client-key",
        "MOEPRUNE_API_KEYS_FILE": "/etc/keys",
        "AWS_SECRET_ACCESS_KEY": "cloud",
        "OPENAI_API_KEY": "sk-x",
        "VLLM_API_KEY": "outside",
        "HF_HOME": "/hf",
        "LC_ALL": "C.UTF-8",
        "CUDA_VISIBLE_DEVICES": "1",
        "VLLM_LOGGING_LEVEL": "DEBUG",
    }.items():
        monkeypatch.setenv(name, value)
    spec = EngineSpec(
        model="/models/m",
        port=9000,
        api_key="engine-key",
        env={"VLLM_CPU_OMP_THREADS_BIND": "1", "VLLM_API_KEY": "from-the-variant"},
    )
    env = launch_environment(spec, tmp_path)
    assert not {"MOEPRUNE_API_KEYS", "MOEPRUNE_API_KEYS_FILE", "AWS_SECRET_ACCESS_KEY", "OPENAI_API_KEY"} & set(env)
    assert env["VLLM_API_KEY"] == "engine-key"  # neither the outside one nor the variant's
    assert env["HF_HOME"] == "/hf" and env["LC_ALL"] == "C.UTF-8" and env["CUDA_VISIBLE_DEVICES"] == "1"
    assert env["VLLM_LOGGING_LEVEL"] == "DEBUG" and env["VLLM_CPU_OMP_THREADS_BIND"] == "1"
    assert env["PATH"] == os.environ["PATH"]
    assert "VLLM_API_KEY" not in launch_environment(EngineSpec(model="/m", port=1), tmp_path)


def test_the_command_line_sets_logprobs_and_silences_the_access_log_but_never_carries_the_key():
    cmd = launch_command(EngineSpec(model="/models/m", port=9000, api_key="engine-key"))
    assert cmd[cmd.index("--max-logprobs") + 1] == "20"
    assert "--disable-uvicorn-access-log" in cmd
    assert "--api-key" not in cmd and not any("engine-key" in arg for arg in cmd)
