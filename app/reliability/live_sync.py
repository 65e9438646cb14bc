"""Live fallbacks in the experiment database: they survive a restart, and every replica sharing it holds them.

The counts behind a fallback stay in each gateway's memory (app/reliability/live.py); what is
persisted is the decision, one row per (variant, domain) in `live_fallbacks`. A trip or a
re-certification here is queued (no I/O on the request path) and written on the store's
thread every `experiment_flush_interval_s`; the same tick reads the table back, so a pair
another replica tripped is flagged here too, and one it re-certified is released. The
database is the referee: a restart starts by reading it. While it is unreachable each
gateway keeps its own decisions and writes them when it returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from app.experiments.recorder import Recorder
from app.experiments.store import SqlStore, StoreUnavailable
from app.reliability.live import LiveCertificates
from moeprune.errors import UserError

log = logging.getLogger("moeprune.reliability")
START_TIMEOUT_S = 5.0  # a database that does not answer at start must not hold the gateway's start


class LiveSync:
    def __init__(self, live: LiveCertificates, store: SqlStore, recorder: Recorder, interval_s: float):
        self.live, self.store, self.recorder, self.interval_s = live, store, recorder, interval_s
        self.pending: dict[tuple[str, str], tuple[str, float] | None] = {}
        self.migrated = False
        self.reachable = True
        self._task: asyncio.Task | None = None
        live.on_change = self.queue

    def queue(self, variant: str, domain: str, held: tuple[str, float] | None) -> None:
        self.pending[(variant, domain)] = held  # the latest decision per pair wins

    async def start(self) -> None:
        """Read the held fallbacks before the first request is served, then keep in step."""
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.sync(), START_TIMEOUT_S)
        self._task = asyncio.create_task(self._loop(), name="moeprune-live-sync")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self.pending:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.sync(), START_TIMEOUT_S)  # a last write, best effort

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.sync()
            except UserError as exc:  # a database newer than this gateway: nothing here can fix it
                log.error("live fallbacks are not persisted", extra={"error": str(exc)[:300]})
                return

    async def sync(self) -> bool:
        """Write the queued decisions, then adopt the table's; True when the database answered."""
        changes, self.pending = self.pending, {}
        try:
            if not self.migrated:
                await self.recorder.call(self.store.migrate)
                self.migrated = True
            if changes:
                await self.recorder.call(self.store.write_fallbacks, changes)
            held = await self.recorder.call(self.store.fallbacks)
        except StoreUnavailable as exc:
            self.pending = {**changes, **self.pending}  # retried next tick; newer decisions win
            if self.reachable:
                log.error(
                    "live fallbacks cannot reach the experiment database: each replica keeps its own until it returns",
                    extra={"error": str(exc)[:300]},
                )
            self.reachable = False
            return False
        if not self.reachable:
            log.info("live fallbacks: experiment database reachable again", extra={"store": self.store.where})
        self.reachable = True
        for (variant, domain), reason in held.items():
            if (variant, domain) not in self.pending:  # a decision made meanwhile is written next tick
                self.live.hold_fallback(variant, domain, reason)
        for (variant, domain), pair in list(self.live.pairs.items()):
            if pair.fallback and (variant, domain) not in held and (variant, domain) not in self.pending:
                self.live.release_fallback(variant, domain)
        return True
