"""`moeprune serve --workers N` as a real subprocess in front of fast stub engines it launches itself.

The engines are testkit/fast_engine.py, started by the gateway as managed engines
(`MOEPRUNE_LAUNCHER`), so the supervisor's ownership of them is what is tested.
Worker processes are found as the serve process's spawned children; each one's
own metric values are read from the shared metrics directory (one file per pid).
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
import psutil
import yaml
from prometheus_client.multiprocess import MultiProcessCollector

from app.workers.worker import is_worker_command
from testkit.vllm_server import free_port
from tests.app.gateway_process import API_KEY, RunningGateway

LAUNCHER = f"{sys.executable} -m testkit.fast_engine --unique-ids"  # ids tell the answers apart (feedback)
FAST = {
    "MOEPRUNE_HEALTH_INTERVAL_S": "0.3",
    "MOEPRUNE_RESTART_BACKOFF_S": "0.3",
    "MOEPRUNE_ENGINE_STOP_GRACE_S": "3",
    "MOEPRUNE_EXPERIMENT_FLUSH_INTERVAL_S": "0.2",
    "MOEPRUNE_SHUTDOWN_GRACE_S": "3",
}
CHAT = {"messages": [{"role": "user", "content": "What makes insulin?"}], "max_tokens": 8}


def write_variants(path: Path, experiments: dict | None = None) -> Path:
    checkpoint = path.parent / "ckpt"
    checkpoint.mkdir(exist_ok=True)  # a managed variant names a directory; the stub engine never reads it
    document: dict = {"variants": {"a": {"model": str(checkpoint)}, "b": {"model": str(checkpoint)}}}
    if experiments:
        document["experiments"] = experiments
    path.write_text(yaml.safe_dump(document))
    return path


def start(config: Path, work_dir: Path, *args: str, env: dict[str, str] | None = None) -> RunningGateway:
    port = free_port()
    log_path = work_dir / "gateway.log"
    environment = {
        **os.environ,
        "MOEPRUNE_API_KEYS": API_KEY,
        "MOEPRUNE_LAUNCHER": LAUNCHER,
        "MOEPRUNE_WORK_DIR": str(work_dir / "engines"),
        "MOEPRUNE_STATE_DIR": str(work_dir / "state"),
        **FAST,
        **(env or {}),
    }
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moeprune.cli", "serve", "--config", str(config), "--port", str(port), *args],
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return RunningGateway(f"http://127.0.0.1:{port}", proc, log_path, config, dirs={"work": work_dir})


def workers(gateway: RunningGateway) -> list[psutil.Process]:
    """The serve process's worker processes (multiprocessing's spawned children, not its resource tracker)."""
    found = []
    with contextlib.suppress(psutil.Error):
        for child in psutil.Process(gateway.proc.pid).children():
            with contextlib.suppress(psutil.Error):
                if is_worker_command(" ".join(child.cmdline())) and child.status() != psutil.STATUS_ZOMBIE:
                    found.append(child)
    return found


def chat(gateway: RunningGateway, model: str = "a", session: str | None = None) -> httpx.Response:
    """One request on a new connection (so the kernel hands each to whichever worker accepts first)."""
    headers = {**gateway.headers, **({"x-session-id": session} if session else {})}
    return httpx.post(gateway.url + "/v1/chat/completions", json={"model": model, **CHAT}, headers=headers, timeout=30)


def requests_by_process(gateway: RunningGateway) -> dict[int, float]:
    """pid -> moeprune_requests_total that process counted, read from its own metrics file."""
    counts = {}
    for path in glob.glob(str(gateway.dirs["work"] / "engines" / "workers-*" / "metrics" / "counter_*.db")):
        pid = int(Path(path).stem.split("_")[1])
        with tempfile.TemporaryDirectory() as alone:
            shutil.copy(path, alone)
            counts[pid] = sum(
                sample.value
                for metric in MultiProcessCollector(None, alone).collect()
                for sample in metric.samples
                if sample.name == "moeprune_requests_total"
            )
    return counts


def metric_total(text: str, name: str) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name + "{") or line.startswith(name + " ")
    )
