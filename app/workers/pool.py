"""The worker processes of one gateway: start N, restart one that dies (bounded), stop them all.

Workers are spawned (a fresh interpreter each), so they inherit only what is
passed: their plan, their listening sockets and the read end of their engine-table
pipe. A worker that exits while the gateway runs is logged and replaced after a
backoff (0.5 s, doubling); more than MAX_RESTARTS within RESTART_WINDOW_S is a
crash loop, which ends the gateway (WorkerCrashLoop) rather than serve on with
fewer workers than configured.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import socket
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path

from app.workers import shared_metrics
from app.workers.engines import EngineTable
from app.workers.worker import WorkerPlan, run_worker

log = logging.getLogger("moeprune.workers")
MAX_RESTARTS = 5
RESTART_WINDOW_S = 60.0
FIRST_BACKOFF_S = 0.5
MAX_BACKOFF_S = 8.0
WATCH_INTERVAL_S = 0.2


class WorkerCrashLoop(Exception):
    """Workers keep dying: the gateway stops (the message says which and how often)."""


@dataclass
class Slot:
    index: int
    process: BaseProcess
    feed: Connection  # the write end of the worker's engine-table pipe


class WorkerPool:
    def __init__(
        self,
        count: int,
        plan: Callable[[int, EngineTable], WorkerPlan],
        listeners: dict[int, socket.socket],
        private: dict[int, socket.socket],
        metrics_dir: Path,
    ):
        self.count, self.plan, self.listeners, self.metrics_dir = count, plan, listeners, metrics_dir
        self.private = private  # worker index -> its Unix socket, kept here so a replacement gets the same one
        self.context = multiprocessing.get_context("spawn")
        self.slots: dict[int, Slot] = {}
        self.recent_restarts: deque[float] = deque()
        self.stopping = False

    def start(self, table: EngineTable) -> None:
        for index in range(self.count):
            self._spawn(index, table)

    def _spawn(self, index: int, table: EngineTable) -> None:
        reader, writer = self.context.Pipe(duplex=False)
        process = self.context.Process(
            target=run_worker,
            args=(self.plan(index, table), self.listeners[index], self.private[index], reader),
            name=f"moeprune-worker-{index}",
        )
        process.start()  # from the event loop's thread: the parent-death signal follows the thread that forked
        reader.close()  # only the worker holds the read end, so the pipe ends when this process does
        self.slots[index] = Slot(index, process, writer)
        log.info("worker started", extra={"worker": index, "pid": process.pid})

    def pids(self) -> list[int]:
        return [slot.process.pid for slot in self.slots.values() if slot.process.pid is not None]

    def publish(self, table: EngineTable) -> None:
        """Send the engine table to every worker (a dead one's pipe is skipped: watch() replaces it)."""
        for slot in self.slots.values():
            with contextlib.suppress(OSError):
                slot.feed.send(table)

    def signal_all(self, sig: int) -> None:
        for slot in self.slots.values():
            with contextlib.suppress(ProcessLookupError, ValueError):
                if slot.process.pid is not None and slot.process.is_alive():
                    os.kill(slot.process.pid, sig)

    async def watch(self, table: Callable[[], EngineTable]) -> None:
        """Replace workers that exit until stopped; WorkerCrashLoop when they keep exiting."""
        while not self.stopping:
            await asyncio.sleep(WATCH_INTERVAL_S)
            for index, slot in list(self.slots.items()):
                if self.stopping or slot.process.is_alive():
                    continue
                code = slot.process.exitcode
                self._forget(slot)
                now = time.monotonic()
                while self.recent_restarts and now - self.recent_restarts[0] > RESTART_WINDOW_S:
                    self.recent_restarts.popleft()
                if len(self.recent_restarts) >= MAX_RESTARTS:
                    raise WorkerCrashLoop(
                        f"gateway worker {index} exited (code {code}) after {MAX_RESTARTS} "
                        f"worker restarts within {RESTART_WINDOW_S:.0f}s; see the log lines above"
                    )
                backoff = min(FIRST_BACKOFF_S * 2 ** len(self.recent_restarts), MAX_BACKOFF_S)
                self.recent_restarts.append(now)
                log.error("worker exited; restarting it", extra={"worker": index, "code": code, "backoff_s": backoff})
                await asyncio.sleep(backoff)
                if not self.stopping:
                    self._spawn(index, table())

    def _forget(self, slot: Slot) -> None:
        with contextlib.suppress(OSError):
            slot.feed.close()
        if slot.process.pid is not None:
            shared_metrics.forget(slot.process.pid, self.metrics_dir)

    async def stop(self, grace_s: float) -> None:
        """SIGTERM every worker (uvicorn's graceful shutdown), SIGKILL what is left after grace_s."""
        self.stopping = True
        for slot in self.slots.values():
            with contextlib.suppress(ValueError):
                if slot.process.is_alive():
                    slot.process.terminate()
        deadline = time.monotonic() + grace_s
        while any(slot.process.is_alive() for slot in self.slots.values()) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        self.kill_all()

    def kill_all(self) -> None:
        """The last resort (also for exits that skipped stop()): SIGKILL and reap every worker."""
        self.stopping = True
        for slot in self.slots.values():
            with contextlib.suppress(ValueError):
                if slot.process.is_alive():
                    log.error("worker did not stop in time; killing it", extra={"worker": slot.index})
                    slot.process.kill()
                slot.process.join(5)
            self._forget(slot)
        self.slots.clear()
