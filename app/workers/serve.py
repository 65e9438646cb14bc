"""`moeprune serve --workers N` (N > 1): this process supervises; N worker processes serve.

In order: build the app once here, which validates everything a worker will
build (keys, variants, cards, TLS, OTLP) and makes the backends; bind the port;
start the managed engines (the same Supervisor a single-process gateway runs,
with its restarts, health checks and keepers); then start the workers on their
sockets and keep them running. SIGTERM or SIGINT stops the workers first (their
open requests still reach the engines), then the engines. SIGHUP is passed on
to every worker (each reloads the experiments). If this process is SIGKILLed,
the workers get SIGTERM from the kernel and the engines' keepers stop them.

Shared state (docs/gateway.md, "Worker processes"): experiment counts, stops and
live fallbacks go through the experiment store, whose location is resolved here
once for every worker; Prometheus values go through shared_metrics.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import shutil
import signal
import socket
import tempfile
from pathlib import Path

from app.config.settings import Settings
from app.engines.pidfile import sweep_stale_engines
from app.engines.supervisor import Supervisor, upstream_tls
from app.experiments.service import state_dir
from app.metrics import MEMORY_CACHE_S, GatewayMetrics
from app.serving.client import build_upstream_client
from app.workers import shared_metrics
from app.workers.engines import EngineTable, engine_table
from app.workers.pool import WorkerCrashLoop, WorkerPool
from app.workers.worker import WorkerPlan
from moeprune.errors import UserError

log = logging.getLogger("moeprune.workers")
PUBLISH_INTERVAL_S = 0.25  # how soon workers learn that an engine moved (a restart on a new port) or went down
STOP_MARGIN_S = 10.0  # after the open requests' grace: a worker's lifespan shutdown (last writes, spans)


def serve_workers(settings: Settings) -> int:
    """Run the gateway with `settings.workers` worker processes until stopped; the exit code."""
    from app.main import create_app

    with contextlib.ExitStack() as cleanup:
        work_dir = settings.work_dir
        if work_dir is None:
            work_dir = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="moeprune-gateway-")))
        # The store's place is decided once, here, as one process would decide it, and every worker uses it.
        settings = settings.model_copy(update={"work_dir": Path(work_dir), "state_dir": state_dir(settings)})
        app = create_app(settings)  # raises UserError before anything starts
        gateway = app.state.gateway
        cleanup.callback(gateway.spans.shutdown)
        Path(work_dir).mkdir(parents=True, exist_ok=True)
        run_dir = Path(tempfile.mkdtemp(prefix="workers-", dir=work_dir))
        cleanup.callback(shutil.rmtree, run_dir, True)
        metrics_dir = run_dir / "metrics"
        metrics_dir.mkdir()
        listeners = listen(settings.host, settings.port, settings.workers)
        for sock in listeners.values():
            cleanup.callback(sock.close)
        # Each worker's private socket (feedback_relay.py), in a short private dir (a Unix path has 107 bytes).
        sockets_dir = Path(tempfile.mkdtemp(prefix="moeprune-workers-"))
        cleanup.callback(shutil.rmtree, sockets_dir, True)
        private = {index: listen_unix(sockets_dir / f"worker-{index}.sock") for index in range(settings.workers)}
        for sock in private.values():
            cleanup.callback(sock.close)
        # From here on this process's metric values go to the shared files: what only it knows (engine
        # restarts and memory, its view of each engine's health) appears on every worker's /metrics.
        shared_metrics.write_to(metrics_dir)
        engine_metrics = GatewayMetrics()
        salt = secrets.token_bytes(32)

        def plan(index: int, table: EngineTable) -> WorkerPlan:
            worker_settings = settings.model_copy(update={"work_dir": run_dir / f"worker-{index}"})
            peers = tuple(sockets_dir / f"worker-{other}.sock" for other in private if other != index)
            return WorkerPlan(
                index=index,
                parent_pid=os.getpid(),
                settings=worker_settings,
                metrics_dir=metrics_dir,
                cache_salt=salt,
                engines=table,
                peers=peers,
            )

        pool = WorkerPool(settings.workers, plan, listeners, private, metrics_dir)
        cleanup.callback(pool.kill_all)
        host, port = listeners[0].getsockname()[:2]
        log.info("gateway listening", extra={"host": host, "port": port, "workers": settings.workers})
        return asyncio.run(supervise(gateway, settings, Path(work_dir), pool, engine_metrics))
    raise AssertionError("unreachable: the block above returns or raises")


def listen(host: str, port: int, count: int) -> dict[int, socket.socket]:
    """One listening socket per worker on the same port (SO_REUSEPORT): the kernel spreads new connections
    over them evenly by address, where one shared socket hands a burst to whichever worker wakes first (on a
    loaded host, every connection of a client's pool to one worker). Bound here, once, and kept for the
    gateway's life: a replaced worker takes over its socket and the connections queued on it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sockets: dict[int, socket.socket] = {}
    try:
        # First a plain bind: SO_REUSEPORT would let this gateway join a port that another process of this user
        # (another gateway) already listens on, and the two would split the traffic without a word.
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
            port = probe.getsockname()[1]  # port 0: the workers' sockets take the one the kernel picked
        for index in range(count):
            # proto given: accepted sockets inherit it, and asyncio sets TCP_NODELAY only on IPPROTO_TCP ones
            # (with proto 0, Nagle held each response's second write for the client's delayed ACK).
            sock = sockets[index] = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((host, port))
            sock.listen(2048)
            sock.set_inheritable(True)
    except OSError as exc:
        for sock in sockets.values():
            sock.close()
        raise UserError(
            f"cannot listen on {host}:{port}: {exc.strerror}; pick another --port (MOEPRUNE_PORT) or stop what holds it"
        ) from None
    return sockets


def listen_unix(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


async def supervise(
    gateway, settings: Settings, work_dir: Path, pool: WorkerPool, engine_metrics: GatewayMetrics
) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, pool.signal_all, signal.SIGHUP)
    backends = gateway.backends
    async with build_upstream_client(settings, upstream_tls(gateway.config, backends)) as client:
        engines = Supervisor(
            backends, client, settings, on_restart=lambda variant: engine_metrics.restarts.labels(variant).inc()
        )
        tasks: list[asyncio.Task] = []
        try:
            # Engines a SIGKILLed earlier gateway left on this work dir (a fixed MOEPRUNE_WORK_DIR).
            await asyncio.to_thread(sweep_stale_engines, work_dir)
            engines.start()
            pool.start(engine_table(backends))
            watcher = asyncio.create_task(pool.watch(lambda: engine_table(backends)), name="moeprune-workers")
            tasks = [
                watcher,
                asyncio.create_task(publish(pool, backends), name="moeprune-engine-table"),
                asyncio.create_task(keep_gauges_fresh(engine_metrics, gateway), name="moeprune-engine-gauges"),
                asyncio.create_task(stop.wait(), name="moeprune-stop"),
            ]
            await asyncio.wait([tasks[0], tasks[-1]], return_when=asyncio.FIRST_COMPLETED)
            if watcher.done() and not watcher.cancelled() and watcher.exception() is not None:
                error = watcher.exception()
                reason = "its workers keep exiting" if isinstance(error, WorkerCrashLoop) else "a worker cannot start"
                log.error(f"gateway stopping: {reason}", extra={"error": str(error)})
                return 1
            return 0
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await pool.stop(settings.shutdown_grace_s + STOP_MARGIN_S)
            await engines.stop()
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)
            log.info("gateway stopped; every worker and engine stopped")


async def publish(pool: WorkerPool, backends) -> None:
    sent: EngineTable | None = None
    while True:
        table = engine_table(backends)
        if table != sent:
            pool.publish(table)
            sent = table
        await asyncio.sleep(PUBLISH_INTERVAL_S)


async def keep_gauges_fresh(metrics: GatewayMetrics, gateway) -> None:
    """This process's view (engine health and memory) in the shared files, as often as a scrape would read it."""
    while True:
        await metrics.refresh(gateway.backends, gateway.gpu)
        await asyncio.sleep(MEMORY_CACHE_S)
