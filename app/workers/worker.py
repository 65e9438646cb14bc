"""One worker process: the gateway app, attached to the supervisor's engines, serving the inherited socket.

Started by pool.py in a fresh interpreter (multiprocessing's spawn: nothing of the
supervisor's event loop, threads or engine handles is inherited). It builds the
same app `moeprune serve` builds (the same settings: keys, limits, TLS to the
engines, OTLP, the experiment store), swaps its managed backends for the
supervisor's engines (engines.py) and serves until SIGTERM or until the
supervisor is gone: the kernel sends SIGTERM when the parent dies (Linux), and
the end of the engine-table pipe says the same everywhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

from app.config.settings import Settings
from app.workers.engines import EngineTable

log = logging.getLogger("moeprune.workers")
RELOAD_PATH = "/v1/admin/reload"
METRICS_REFRESH_S = 1.0  # how fresh this worker's gauges (in flight, backend up, live windows) are in the files
TITLE = "moeprune worker"  # what ps shows: "moeprune worker I (port P)"


def is_worker_command(command: str) -> bool:
    """Whether a process's command line is a gateway worker's: named, or (without setproctitle, or in the moment
    before it names itself) multiprocessing's spawn command. For tools that look at the process tree."""
    return command.startswith(TITLE + " ") or "spawn_main" in command


@dataclass(frozen=True)
class WorkerPlan:
    """What the supervisor hands a worker (pickled into the new process; the key table is secret)."""

    index: int
    parent_pid: int
    settings: Settings
    metrics_dir: Path
    cache_salt: bytes  # one prefix-cache salt secret for all workers: a key's prompts share the engine's cache
    engines: EngineTable
    peers: tuple[Path, ...] = ()  # the other workers' private sockets (feedback_relay.py)


def name_process(title: str) -> None:
    """What ps and top show for this process: an operator sees which worker is which instead of
    multiprocessing's spawn command line. setproctitle comes with vLLM; a serve-only install without it
    keeps the command line."""
    try:
        from setproctitle import setproctitle
    except ImportError:
        return
    setproctitle(title)


def run_worker(plan: WorkerPlan, listener: socket.socket, private: socket.socket, feed: Connection) -> None:
    """The worker process's entry point: `listener` is this worker's socket on the gateway's port, `private`
    its Unix socket (the other workers relay feedback to it)."""
    from app.engines.reaper import set_parent_death_signal

    set_parent_death_signal(signal.SIGTERM)
    if os.getppid() != plan.parent_pid:  # the supervisor died before the line above took effect
        return
    name_process(f"{TITLE} {plan.index} (port {plan.settings.port})")
    from app.workers import shared_metrics

    shared_metrics.write_to(plan.metrics_dir)  # before the app makes its first metric
    from starlette.middleware import Middleware

    from app.main import create_app
    from app.serving.salt import CacheSalt
    from app.workers.engines import attach
    from app.workers.feedback_relay import FeedbackRelay, Peers
    from moeprune.errors import UserError

    try:
        app = create_app(plan.settings)
    except UserError as exc:  # the supervisor built the same app a moment ago; a file changed meanwhile
        log.error("worker cannot start", extra={"worker": plan.index, "error": str(exc)})
        sys.exit(2)
    gateway = app.state.gateway
    attach(gateway.backends, plan.engines)
    gateway.cache_salt = CacheSalt(secret=plan.cache_salt)
    peers = Peers(list(plan.peers))
    # Innermost, after the key check and the body bound (add_middleware would put them outside everything).
    app.user_middleware.append(Middleware(ReloadEveryWorker, parent=plan.parent_pid))
    app.user_middleware.append(Middleware(FeedbackRelay, peers=peers))
    asyncio.run(serve(app, plan, [listener, private], feed, peers))


async def serve(app, plan: WorkerPlan, sockets: list[socket.socket], feed: Connection, peers) -> None:
    import uvicorn

    from app.logs import uvicorn_log_config
    from app.workers.engines import follow

    gateway = app.state.gateway
    # uvicorn annotates timeout_graceful_shutdown as int, but only hands it to asyncio.wait_for (float seconds).
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=plan.settings.shutdown_grace_s,  # type: ignore[arg-type]
        log_config=uvicorn_log_config(),
    )
    server = uvicorn.Server(config)

    def parent_gone() -> None:
        server.should_exit = True

    tasks = [
        asyncio.create_task(follow(feed, gateway.backends, parent_gone), name="moeprune-engine-table"),
        asyncio.create_task(keep_gauges_fresh(gateway), name="moeprune-worker-gauges"),
    ]
    try:
        await server.serve(sockets=sockets)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await peers.close()


async def keep_gauges_fresh(gateway) -> None:
    """Whichever worker answers a scrape reads the files: every worker writes its gauges there each second."""
    while True:
        await gateway.metrics.refresh(gateway.backends, gateway.gpu)
        await asyncio.sleep(METRICS_REFRESH_S)


class ReloadEveryWorker:
    """POST /v1/admin/reload reloads the worker that answered it; once it succeeded, the supervisor is asked
    (SIGHUP, as an operator would) to reload every worker, so all of them route by the same experiments."""

    def __init__(self, app, parent: int) -> None:
        self.app, self.parent = app, parent

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["path"] != RELOAD_PATH or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        status = 0

        async def watched(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        await self.app(scope, receive, watched)
        if status == 200:
            with contextlib.suppress(ProcessLookupError):  # the supervisor is gone: this worker stops anyway
                os.kill(self.parent, signal.SIGHUP)
