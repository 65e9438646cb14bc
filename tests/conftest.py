"""Shared fixtures: tiny models built once per session, real vLLM servers on demand."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# No test may reach a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session", autouse=True)
def source_hash_cache_in_tmp(tmp_path_factory):
    """The writer's source-hash cache lives in the session's tmp dir (child processes inherit it), never in ~/.cache."""
    from pruning.hash_cache import CACHE_DIR_ENV

    before = os.environ.get(CACHE_DIR_ENV)
    os.environ[CACHE_DIR_ENV] = str(tmp_path_factory.mktemp("moeprune-hash-cache"))
    yield
    if before is None:
        os.environ.pop(CACHE_DIR_ENV, None)
    else:
        os.environ[CACHE_DIR_ENV] = before


@pytest.fixture(scope="session")
def tiny_model_factory(tmp_path_factory):
    """Build (once per session and family) a tiny random model; returns its directory."""
    from testkit.tiny_models import build_tiny_model

    built: dict[str, Path] = {}

    def make(model_type: str = "qwen3_moe") -> Path:
        if model_type not in built:
            built[model_type] = build_tiny_model(model_type, tmp_path_factory.mktemp(f"tiny-{model_type}"))
        return built[model_type]

    return make


@pytest.fixture(scope="session")
def tiny_qwen3_moe(tiny_model_factory) -> Path:
    return tiny_model_factory("qwen3_moe")


@pytest.fixture(scope="session")
def tiny_vllm_url(tiny_qwen3_moe, tmp_path_factory):
    """A real vLLM CPU server serving the tiny Qwen3-MoE model as `tiny`, shared by the session."""
    from testkit.vllm_server import vllm_server

    with vllm_server(tiny_qwen3_moe, tmp_path_factory.mktemp("vllm-tiny"), served_name="tiny") as url:
        yield url
