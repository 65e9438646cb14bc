"""Stale engines of a dead gateway: find them by their pidfiles and stop them, at start.

Each engine's keeper (app/engines/reaper.py) writes `<work_dir>/<variant>/engine.pid`
and removes it when the engine is gone. A pidfile left behind means the keeper
itself was killed; its engine may still hold memory and, with a fixed port, the
port. Before killing anything the sweep checks that the recorded process really
is the one that was started (same pid AND same start time, so a reused pid is
never hit; the command line is only logged) and that the gateway that started it is no longer running (a second
gateway sharing the work dir keeps its engines).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import time
from pathlib import Path

import psutil

log = logging.getLogger("moeprune.supervisor")
PIDFILE_NAME = "engine.pid"
_SAME_START = 0.05  # seconds: create times from psutil agree to well within this


def _is_the_recorded(pid: int | None, create_time: float | None) -> psutil.Process | None:
    if not pid or create_time is None:
        return None
    with contextlib.suppress(psutil.Error):
        proc = psutil.Process(pid)
        if abs(proc.create_time() - create_time) < _SAME_START and proc.status() != psutil.STATUS_ZOMBIE:
            return proc
    return None


def _stop_group(engine: psutil.Process, grace: float) -> None:
    pgid = engine.pid  # the engine leads its own process group (start_new_session)
    with contextlib.suppress(psutil.Error, OSError):
        if os.getpgid(engine.pid) != pgid:
            engine.terminate()
            pgid = None
    members = []
    with contextlib.suppress(psutil.Error):
        members = [engine, *engine.children(recursive=True)]
    for sig in (signal.SIGTERM, signal.SIGCONT):
        if pgid is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, sig)
    _, alive = psutil.wait_procs(members, timeout=grace)
    if pgid is not None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(alive, timeout=5)


def sweep_stale_engines(work_dir: Path, grace: float = 5.0) -> list[int]:
    """Stop the engines recorded under work_dir whose gateway is gone; return the engine pids stopped."""
    stopped: list[int] = []
    work_dir = Path(work_dir)
    if not work_dir.is_dir():
        return stopped
    for pidfile in sorted(work_dir.glob(f"*/{PIDFILE_NAME}")):
        try:
            record = json.loads(pidfile.read_text())
        except (OSError, ValueError) as exc:
            log.warning("unreadable engine pidfile removed", extra={"pidfile": str(pidfile), "error": str(exc)})
            with contextlib.suppress(OSError):
                pidfile.unlink()
            continue
        if _is_the_recorded(record.get("gateway_pid"), record.get("gateway_create_time")) is not None:
            continue  # its gateway still runs (another gateway on the same work dir): not ours to stop
        engine = _is_the_recorded(record.get("engine_pid"), record.get("engine_create_time"))
        reaper = _is_the_recorded(record.get("reaper_pid"), record.get("reaper_create_time"))
        if reaper is not None:
            with contextlib.suppress(psutil.Error):
                reaper.kill()  # its gateway is dead; the engine is stopped here instead
        # pid + start time identify a process for the life of the machine; the command line is not
        # compared because vLLM renames its processes (setproctitle).
        if engine is not None:
            log.warning(
                "stopping a stale engine left by a previous gateway",
                extra={"pidfile": str(pidfile), "pid": engine.pid, "cmdline": record.get("engine_cmdline")},
            )
            started = time.monotonic()
            _stop_group(engine, grace)
            stopped.append(engine.pid)
            log.info("stale engine stopped", extra={"pid": engine.pid, "took_s": round(time.monotonic() - started, 2)})
        with contextlib.suppress(OSError):
            pidfile.unlink()
    return stopped
