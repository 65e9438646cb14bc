"""One managed vLLM server process: launch it, wait until it is healthy, stop it without orphans.

The engine does not run as the gateway's direct child but under a keeper
(app/engines/reaper.py) that owns its process group: if the gateway dies in any
way, the kernel signals the keeper and the keeper stops the whole group. A stop
from the gateway goes through the keeper too (SIGTERM; it escalates to SIGKILL
after the grace); should the keeper not finish in time, the gateway kills the
keeper, the group and every straggler itself.

`launch()` must run on a thread that lives as long as the gateway (its event
loop's): the parent-death signal fires when the launching thread exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import psutil

from app.engines.command import EngineSpec, launch_command, launch_environment
from app.engines.pidfile import PIDFILE_NAME

REAPER = Path(__file__).with_name("reaper.py")


class EngineStartError(RuntimeError):
    """An engine exited or stayed unhealthy while starting; the message carries its log tail."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class EngineProcess:
    def __init__(
        self,
        name: str,
        spec: EngineSpec,
        work_dir: Path,
        stop_grace: float = 15.0,
        log_max_bytes: int = 20 * 1024 * 1024,
    ):
        self.name = name
        self.spec = spec
        self.work_dir = Path(work_dir)
        self.log_path = self.work_dir / "engine.log"
        self.pidfile = self.work_dir / PIDFILE_NAME
        self.stop_grace = stop_grace
        self.log_max_bytes = log_max_bytes
        self.proc: subprocess.Popen | None = None  # the keeper; the engine is its child
        self.fixed_port = spec.port or None

    @property
    def url(self) -> str:
        return f"http://{self.spec.host}:{self.spec.port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def returncode(self) -> int | None:
        """The keeper's exit code; None while it runs or before the first launch."""
        return self.proc.returncode if self.proc else None

    def launch(self) -> None:
        """Start the server (a fresh free port unless the variant fixed one)."""
        self.spec.port = self.fixed_port or free_port()
        self.work_dir.mkdir(parents=True, exist_ok=True)
        command = launch_command(self.spec)
        with open(self.log_path, "ab") as log:
            log.write(f"\n=== moeprune: starting {' '.join(command)}\n".encode())
        keeper = [
            sys.executable,
            str(REAPER),
            "--parent",
            str(os.getpid()),
            "--grace",
            str(self.stop_grace),
            "--log",
            str(self.log_path),
            "--log-max-bytes",
            str(self.log_max_bytes),
            "--pidfile",
            str(self.pidfile),
            "--",
            *command,
        ]
        # The keeper gets its own session: a Ctrl-C at the terminal is the gateway's to handle.
        self.proc = subprocess.Popen(
            keeper,
            env=launch_environment(self.spec, self.work_dir / "scratch"),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            start_new_session=True,
        )

    def log_tail(self, chars: int = 3000) -> str:
        text = ""
        for path in (self.log_path.with_name(self.log_path.name + ".1"), self.log_path):
            with contextlib.suppress(OSError):
                text += path.read_text(errors="replace")
        return text[-chars:] if text else "(no engine log)"

    async def wait_healthy(self, probe: Callable[[], Awaitable[bool]], timeout: float) -> None:
        """Return once `probe()` says the engine is up; raise EngineStartError if it exits or times out."""
        deadline = time.monotonic() + timeout
        while True:
            if not self.running():
                code = self.returncode
                raise EngineStartError(
                    f"engine {self.name!r} exited with code {code} while starting; "
                    f"log {self.log_path}:\n{self.log_tail()}"
                )
            if await probe():
                return
            if time.monotonic() > deadline:
                raise EngineStartError(
                    f"engine {self.name!r} not healthy after {timeout:.0f}s; log {self.log_path}:\n{self.log_tail()}"
                )
            await asyncio.sleep(0.5)

    def process_tree(self) -> list[psutil.Process]:
        """The engine's processes (the keeper's descendants; the keeper itself is not counted)."""
        if not self.running():
            return []
        assert self.proc is not None  # running() means launched
        with contextlib.suppress(psutil.Error):
            return psutil.Process(self.proc.pid).children(recursive=True)
        return []

    def owns_listener(self, port: int) -> bool:
        """True when the socket listening on `port` belongs to this engine's processes."""
        for proc in self.process_tree():
            with contextlib.suppress(psutil.Error):
                if any(
                    conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port
                    for conn in proc.net_connections(kind="inet")
                ):
                    return True
        return False

    def resident_bytes(self) -> int:
        total = 0
        for proc in self.process_tree():
            with contextlib.suppress(psutil.Error):
                total += proc.memory_info().rss
        return total

    def terminate(self) -> None:
        """Ask the keeper to stop the engine now, without waiting (an interrupted caller's first step)."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(self.proc.pid, signal.SIGTERM)

    def finish_stop(self, tree: list[psutil.Process], deadline: float) -> None:
        """Wait for the keeper until `deadline`; then kill the keeper, the group and stragglers."""
        if self.proc is None:
            return
        while time.monotonic() < deadline and (self.proc.poll() is None or any(map(_alive, tree))):
            time.sleep(0.1)
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(self.proc.pid, signal.SIGKILL)
        for proc in tree:
            with contextlib.suppress(psutil.Error, ProcessLookupError, PermissionError):
                if _alive(proc):
                    os.killpg(os.getpgid(proc.pid), signal.SIGKILL)
                    proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)

    def stop_blocking(self, grace: float | None = None) -> None:
        """SIGTERM through the keeper, SIGKILL after `grace` (default: the keeper's); bounded."""
        if self.proc is None:
            return
        tree = self.process_tree()
        self.terminate()
        self.finish_stop(tree, time.monotonic() + (self.stop_grace if grace is None else grace) + 3)

    async def stop(self, grace: float | None = None) -> None:
        await asyncio.to_thread(self.stop_blocking, grace)


def _alive(proc: psutil.Process) -> bool:
    with contextlib.suppress(psutil.Error):
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    return False


async def probe_health(
    client: httpx.AsyncClient, base_url: str, headers: dict[str, str] | None = None, errors: list[str] | None = None
) -> bool:
    """Whether /health answers 200; a transport failure's text (e.g. a TLS verification error) goes to `errors`."""
    try:
        response = await client.get(base_url + "/health", headers=headers, timeout=3)
        return response.status_code == 200
    except httpx.HTTPError as exc:
        if errors is not None:
            errors.append(str(exc))
    return False


async def served_models(
    client: httpx.AsyncClient, base_url: str, headers: dict[str, str]
) -> dict[str, int | None] | None:
    """Model id -> its context length (vLLM lists `max_model_len`), as /v1/models says to our key; None when
    the server will not say."""
    with contextlib.suppress(httpx.HTTPError, ValueError, KeyError, TypeError, AttributeError):
        response = await client.get(base_url + "/v1/models", headers=headers, timeout=3)
        if response.status_code == 200:
            return {
                entry["id"]: entry.get("max_model_len") if isinstance(entry.get("max_model_len"), int) else None
                for entry in response.json()["data"]
            }
    return None
