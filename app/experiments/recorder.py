"""Writes to the experiment store, buffered in memory and flushed off the request path.

A completion only adds to in-memory totals and appends its id (O(1), no I/O);
a background task hands the batch to the store's own thread every
`experiment_flush_interval_s`. Counter totals merge (so while the database is
down they wait in memory, bounded by the number of counter names, and catch up
in full when it returns); completion ids queue up to `experiment_buffer_ids`,
beyond which the oldest are dropped: counted in
`moeprune_experiment_store_dropped_total{kind="completion_id"}` and logged
(feedback for a dropped id no longer counts for its experiment arm; it still
counts for the live re-check on the replica that served it). A database that is slow only
delays the next flush; no request ever waits for it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from app.experiments.store import Completion, SqlStore, StoreUnavailable

log = logging.getLogger("moeprune.experiments")
DROP_LOG_EVERY_S = 10.0  # a long outage under load drops ids on every request: one log line per interval


class Recorder:
    def __init__(
        self, store: SqlStore, buffer_ids: int, on_drop: Callable[[int], None], on_state: Callable[[bool], None]
    ):
        self.store = store
        self.buffer_ids = buffer_ids
        self._on_drop, self._on_state = on_drop, on_state
        self.counters: dict[tuple[str, str, str], float] = {}
        self.completions: deque[Completion] = deque()
        self.dropped = 0
        self._drop_logged_at = float("-inf")
        self.up = True
        # One thread owns the database: a hung connection can block only it, never the event loop's pool.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="moeprune-store")
        self._flush_lock = asyncio.Lock()

    # -- the request path (event loop, no I/O) --------------------------------------------------------
    def add(self, experiment: str, arm: str, name: str, amount: float = 1.0) -> None:
        key = (experiment, arm, name)
        self.counters[key] = self.counters.get(key, 0.0) + amount

    def remember(self, completion: Completion) -> None:
        self.completions.append(completion)
        self._bound()

    def _bound(self) -> None:
        overflow = len(self.completions) - self.buffer_ids
        if overflow > 0:
            for _ in range(overflow):
                self.completions.popleft()
            self.dropped += overflow
            self._on_drop(overflow)
            if time.monotonic() - self._drop_logged_at < DROP_LOG_EVERY_S:
                return
            self._drop_logged_at = time.monotonic()
            log.warning(
                "experiment store behind: completion ids dropped (their feedback will not count for the experiment)",
                extra={"dropped": overflow, "dropped_total": self.dropped, "store": self.store.where},
            )

    def pending(self) -> int:
        return len(self.completions) + len(self.counters)

    # -- the store thread ---------------------------------------------------------------------------
    async def call(self, function, *args):
        """Run a store method on the store's thread."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)

    async def flush(self) -> bool:
        """Write what is buffered; on failure keep it (merged with what arrives meanwhile). True on success."""
        async with self._flush_lock:
            if not self.counters and not self.completions:
                return await self._check_if_down()
            counters, completions = self.counters, list(self.completions)
            self.counters, self.completions = {}, deque()
            try:
                await self.call(self.store.apply, counters, completions)
            except StoreUnavailable as exc:
                for key, amount in counters.items():
                    self.counters[key] = self.counters.get(key, 0.0) + amount
                self.completions.extendleft(reversed(completions))
                self._bound()
                self.mark(False, str(exc))
                return False
            self.mark(True)
            return True

    async def _check_if_down(self) -> bool:
        if self.up:
            return True
        try:
            await self.call(self.store.counters)
        except StoreUnavailable as exc:
            self.mark(False, str(exc))
            return False
        self.mark(True)
        return True

    def mark(self, up: bool, reason: str = "") -> None:
        if up and not self.up:
            log.info("experiment store reachable again; buffered state written", extra={"store": self.store.where})
        elif not up and self.up:
            log.error(
                "experiment store unavailable: buffering in memory (completions are not affected)",
                extra={"store": self.store.where, "error": reason[:300]},
            )
        self.up = up
        self._on_state(up)

    async def close(self) -> None:
        """A last flush (best effort), then release the database."""
        try:
            await asyncio.wait_for(self.flush(), timeout=5)
        except (TimeoutError, StoreUnavailable):
            log.warning(
                "experiment store: buffered state could not be written at shutdown", extra={"pending": self.pending()}
            )
        await self.call(self.store.close)
        self._executor.shutdown(wait=False)
