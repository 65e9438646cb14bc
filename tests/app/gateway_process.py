"""Run `moeprune serve` as a real subprocess for integration tests, and stop it like an operator would."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

from testkit.vllm_server import free_port

API_KEY = "test-key-123"


@dataclass
class RunningGateway:
    url: str
    proc: subprocess.Popen
    log_path: Path
    config_path: Path
    dirs: dict[str, Path] = field(default_factory=dict)
    api_key: str = API_KEY

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def engine_roots(self) -> dict[str, psutil.Process]:
        """variant -> the root process of its vLLM server (the child of its keeper, app/engines/reaper.py)."""
        roots = {}
        for keeper in psutil.Process(self.proc.pid).children():
            with contextlib.suppress(psutil.Error):
                for child in keeper.children():
                    cmdline = child.cmdline()
                    if "--served-model-name" in cmdline:
                        roots[cmdline[cmdline.index("--served-model-name") + 1]] = child
        return roots

    def descendants(self) -> list[psutil.Process]:
        """Every process under the gateway: keepers, engines and their workers."""
        with contextlib.suppress(psutil.Error):
            return psutil.Process(self.proc.pid).children(recursive=True)
        return []

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited with {self.proc.returncode}:\n{self.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + "/ready", timeout=3).status_code == 200:
                    return
            time.sleep(0.5)
        raise RuntimeError(f"gateway not ready after {timeout}s:\n{self.log_tail()}")

    def shutdown(self, timeout: float = 90) -> int:
        """SIGTERM (graceful: the gateway stops its engines), then SIGKILL the group as a last resort."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        return self.proc.returncode


def start_gateway(config_path: Path, work_dir: Path, env: dict[str, str] | None = None) -> RunningGateway:
    port = free_port()
    log_path = work_dir / "gateway.log"
    environment = {
        **os.environ,
        "MOEPRUNE_API_KEYS": API_KEY,
        "MOEPRUNE_WORK_DIR": str(work_dir / "engines"),
        **(env or {}),
    }
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moeprune.cli", "serve", "--config", str(config_path), "--port", str(port)],
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return RunningGateway(f"http://127.0.0.1:{port}", proc, log_path, config_path)
