"""The engines a worker serves from: their address and state, as the supervisor that owns them sees it.

The supervisor sends the table to each worker when it starts and again whenever an
entry changes (an engine restarted on a new port, went down, came back). A worker
turns each managed backend into an attached one (app/engines/backends.py): it sends
requests to the table's URL with the table's key and probes it like a remote server
(identity included: the engine must list the variant to that key), but never starts,
restarts or stops it. The key travels in the pipe, never in argv or the environment.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection

from app.engines.backends import Backend

log = logging.getLogger("moeprune.workers")


@dataclass(frozen=True)
class EngineAddress:
    url: str
    api_key: str | None
    up: bool
    restarts: int
    error: str | None


EngineTable = dict[str, EngineAddress]


def engine_table(backends: dict[str, Backend]) -> EngineTable:
    """The supervisor's view of every engine it manages (remote variants: workers reach them themselves)."""
    return {
        name: EngineAddress(backend.url, backend.api_key, backend.up, backend.restarts, backend.last_error)
        for name, backend in backends.items()
        if backend.engine is not None
    }


def attach(backends: dict[str, Backend], table: EngineTable) -> None:
    """In a worker: each managed backend becomes the attached backend of the supervisor's engine."""
    for name, address in table.items():
        backend = backends[name]
        backend.engine, backend.attached = None, True
        apply(backend, address)


def apply(backend: Backend, address: EngineAddress) -> None:
    backend.remote_url, backend.api_key, backend.restarts = address.url, address.api_key, address.restarts
    # The owner knows first, both ways: it just probed the engine (or saw it die, and why). Without taking its
    # word for "up", a worker reported the engine down on /ready and /metrics until its own first probe, so
    # right after a start one worker could answer /ready 503 while the other answered 200.
    # The worker's own probes go on afterwards and take it down if the engine stops answering this worker.
    backend.up = address.up
    backend.last_error = None if address.up else (address.error or "the engine is not up yet")


async def follow(feed: Connection, backends: dict[str, Backend], on_parent_gone: Callable[[], None]) -> None:
    """Apply every table the supervisor sends; the pipe's end means the supervisor is gone."""
    loop = asyncio.get_running_loop()
    readable = asyncio.Event()
    loop.add_reader(feed.fileno(), readable.set)
    try:
        while True:
            await readable.wait()
            readable.clear()
            try:
                while feed.poll():
                    table: EngineTable = feed.recv()
                    for name, address in table.items():
                        if name in backends:
                            apply(backends[name], address)
            except (EOFError, OSError):
                log.error("the serve process is gone; this worker stops")
                on_parent_gone()
                return
    finally:
        loop.remove_reader(feed.fileno())
