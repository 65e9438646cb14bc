"""Stopping `moeprune demo` mid-evaluation stops its vLLM engines too and claims nothing unfinished."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parents[2]


def engines_of(marker: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if "vllm" in cmdline and marker in cmdline:
            found.append(proc)
    return found


@pytest.mark.slow
def test_sigterm_during_evaluation_stops_every_engine(tmp_path):
    cache = tmp_path / "cache"
    demo = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "moeprune.cli",
            "demo",
            "--cache-dir",
            str(cache),
            "--out",
            str(tmp_path / "out"),
            "--train-steps",
            "5",
            "--methods",
            "frequency",
            "--ratios",
            "0.5",
            "--limit",
            "2",
            "--no-serve",
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 300
        while not engines_of(str(cache)):
            assert demo.poll() is None, f"demo exited before evaluating: {demo.stderr.read()[-2000:]}"
            assert time.monotonic() < deadline, "no vLLM engine started within 300 s"
            time.sleep(0.5)
        demo.send_signal(signal.SIGTERM)
        assert demo.wait(timeout=90) == 130
        assert "interrupted" in demo.stderr.read()
        deadline = time.monotonic() + 30
        while engines_of(str(cache)) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not engines_of(str(cache)), "vLLM engines outlived the interrupted demo"
        # nothing unfinished is claimed: no stamped card, no results table
        assert not list(cache.glob("runs/*/cards/*/demo_eval.json"))
        assert not (tmp_path / "out" / "results.json").exists()
    finally:
        if demo.poll() is None:
            demo.kill()
        for proc in engines_of(str(cache)):
            proc.kill()
