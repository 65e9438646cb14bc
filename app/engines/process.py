"""One managed vLLM server process: launch it, wait until it is healthy, stop it without orphans.

The engine runs in its own session (process group), so a stop signals the API
server and every worker it spawned at once; anything still alive after the
grace period is killed, group and stragglers alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
import psutil

from app.engines.command import EngineSpec, launch_command, launch_environment


class EngineStartError(RuntimeError):
    """An engine exited or stayed unhealthy while starting; the message carries its log tail."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class EngineProcess:
    def __init__(self, name: str, spec: EngineSpec, work_dir: Path):
        self.name = name
        self.spec = spec
        self.work_dir = Path(work_dir)
        self.log_path = self.work_dir / "engine.log"
        self.proc: subprocess.Popen | None = None
        self.fixed_port = spec.port or None

    @property
    def url(self) -> str:
        return f"http://{self.spec.host}:{self.spec.port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def launch(self) -> None:
        """Start the server (a fresh free port unless the variant fixed one)."""
        self.spec.port = self.fixed_port or free_port()
        self.work_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            log.write(f"\n=== moeprune: starting {' '.join(launch_command(self.spec))}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                launch_command(self.spec), env=launch_environment(self.spec, self.work_dir / "scratch"),
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )

    def log_tail(self, chars: int = 3000) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-chars:]
        return "(no engine log)"

    async def wait_healthy(self, client: httpx.AsyncClient, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if not self.running():
                code = self.proc.returncode if self.proc else None
                raise EngineStartError(f"engine {self.name!r} exited with code {code} while starting; "
                                       f"log {self.log_path}:\n{self.log_tail()}")
            if await probe_health(client, self.url):
                return
            if time.monotonic() > deadline:
                raise EngineStartError(f"engine {self.name!r} not healthy after {timeout:.0f}s; "
                                       f"log {self.log_path}:\n{self.log_tail()}")
            await asyncio.sleep(0.5)

    def process_tree(self) -> list[psutil.Process]:
        if not self.running():
            return []
        with contextlib.suppress(psutil.Error):
            root = psutil.Process(self.proc.pid)
            return [root, *root.children(recursive=True)]
        return []

    def resident_bytes(self) -> int:
        total = 0
        for proc in self.process_tree():
            with contextlib.suppress(psutil.Error):
                total += proc.memory_info().rss
        return total

    def terminate(self) -> None:
        """SIGTERM the engine's process group now, without waiting (an interrupted caller's first step)."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGTERM)

    async def stop(self, grace: float) -> None:
        """SIGTERM the group, wait `grace` seconds, then SIGKILL the group and any stragglers."""
        if self.proc is None:
            return
        tree = self.process_tree()
        self.terminate()
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and (self.proc.poll() is None or any(map(_alive, tree))):
            await asyncio.sleep(0.2)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        for straggler in tree:
            with contextlib.suppress(psutil.Error):
                straggler.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)


def _alive(proc: psutil.Process) -> bool:
    with contextlib.suppress(psutil.Error):
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    return False


async def probe_health(client: httpx.AsyncClient, base_url: str) -> bool:
    with contextlib.suppress(httpx.HTTPError):
        response = await client.get(base_url + "/health", timeout=3)
        return response.status_code == 200
    return False
