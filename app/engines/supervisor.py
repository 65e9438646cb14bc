"""Keep every variant's backend serving: start managed engines, watch them, restart crashes.

Managed engines start concurrently. Each backend has one watch task: it polls
the process and `/health`, marks the backend up or down (the proxy answers 503
while down), and restarts a crashed engine with exponential backoff. Remote
backends are only health-checked. `stop()` ends the watch tasks first, so no
engine is restarted while the gateway shuts down, then stops every engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shlex
from collections.abc import Callable
from pathlib import Path

import httpx

from app.config.variants import GatewayConfig
from app.core.config import Settings
from app.engines.backends import Backend
from app.engines.command import EngineSpec
from app.engines.process import EngineProcess, EngineStartError, probe_health

log = logging.getLogger("moeprune.supervisor")
UNHEALTHY_AFTER_PROBES = 3


def build_backends(config: GatewayConfig, settings: Settings, work_dir: Path) -> dict[str, Backend]:
    launcher = shlex.split(settings.launcher) if settings.launcher else config.launcher_argv()
    backends = {}
    for name, variant in config.variants.items():
        limit = variant.max_in_flight or settings.max_in_flight_per_variant
        if not variant.managed:
            backends[name] = Backend(name, variant.served_model_name, remote_url=variant.url, max_in_flight=limit)
            continue
        options = variant.engine
        spec = EngineSpec(
            model=variant.model, port=options.port or 0, served_name=name, dtype=options.dtype,
            max_model_len=options.max_model_len, gpu_memory_utilization=options.gpu_memory_utilization,
            args=list(options.args), env=dict(options.env), launcher=launcher,
        )
        if options.kv_cache_bytes is not None:
            spec.kv_cache_bytes = options.kv_cache_bytes
        engine = EngineProcess(name, spec, work_dir / name)
        backends[name] = Backend(name, name, engine=engine, max_in_flight=limit)
    return backends


class Supervisor:
    def __init__(self, backends: dict[str, Backend], client: httpx.AsyncClient, settings: Settings,
                 on_restart: Callable[[str], None] = lambda variant: None):
        self.backends = backends
        self.client = client
        self.settings = settings
        self.on_restart = on_restart
        self.tasks: list[asyncio.Task] = []
        self.stopping = False

    def start(self) -> None:
        """Launch every managed engine now and watch all backends in the background."""
        for backend in self.backends.values():
            if backend.engine is not None:
                backend.engine.launch()
            self.tasks.append(asyncio.create_task(self._watch(backend), name=f"watch-{backend.variant}"))

    def all_up(self) -> bool:
        return all(backend.up for backend in self.backends.values())

    async def wait_all_up(self, timeout: float) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self.all_up():
            if loop.time() > deadline:
                return False
            await asyncio.sleep(0.2)
        return True

    def mark_down(self, backend: Backend, reason: str) -> None:
        """Called by the proxy when it cannot reach a backend: answer 503 until health is back."""
        if backend.up:
            log.warning("backend down", extra={"variant": backend.variant, "reason": reason})
        backend.up = False
        backend.last_error = reason

    async def _watch(self, backend: Backend) -> None:
        if backend.engine is None:
            await self._watch_remote(backend)
        else:
            await self._watch_managed(backend)

    async def _watch_remote(self, backend: Backend) -> None:
        failed_probes = UNHEALTHY_AFTER_PROBES  # down until the first successful probe
        while not self.stopping:
            healthy = await probe_health(self.client, backend.url)
            if healthy and backend.served_model is None:
                backend.served_model = await self._discover_model_name(backend.url)
            failed_probes = 0 if healthy and backend.served_model else failed_probes + 1
            backend.up = failed_probes < UNHEALTHY_AFTER_PROBES
            backend.last_error = None if backend.up else f"remote server {backend.url} is not healthy"
            await asyncio.sleep(self.settings.health_interval_s)

    async def _discover_model_name(self, url: str) -> str | None:
        with contextlib.suppress(httpx.HTTPError, ValueError, KeyError, IndexError):
            response = await self.client.get(url + "/v1/models", timeout=5)
            return response.json()["data"][0]["id"]
        return None

    async def _watch_managed(self, backend: Backend) -> None:
        engine = backend.engine
        backoff = self.settings.restart_backoff_s
        first = True
        while not self.stopping:
            if not first:
                backend.restarts += 1
                self.on_restart(backend.variant)
                log.warning("restarting engine", extra={"variant": backend.variant, "backoff_s": backoff})
                await engine.stop(self.settings.engine_stop_grace_s)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.settings.restart_backoff_max_s)
                engine.launch()
            first = False
            try:
                await engine.wait_healthy(self.client, self.settings.engine_start_timeout_s)
            except EngineStartError as exc:
                backend.last_error = str(exc)
                log.error("engine failed to start", extra={"variant": backend.variant, "error": str(exc)})
                continue
            backend.up, backend.last_error = True, None
            backoff = self.settings.restart_backoff_s
            log.info("engine up", extra={"variant": backend.variant, "url": engine.url})
            await self._watch_running(backend)
            backend.up = False

    async def _watch_running(self, backend: Backend) -> None:
        """Return when the engine process has exited; keep `up` in step with /health meanwhile."""
        engine = backend.engine
        since_probe, failed_probes = 0.0, 0
        while not self.stopping and engine.running():
            await asyncio.sleep(0.25)
            since_probe += 0.25
            if since_probe >= self.settings.health_interval_s:
                since_probe = 0.0
                # A busy engine can miss one probe; only repeated misses take it out of service.
                failed_probes = 0 if await probe_health(self.client, engine.url) else failed_probes + 1
                backend.up = failed_probes < UNHEALTHY_AFTER_PROBES
        if not self.stopping:
            backend.last_error = f"engine exited with code {engine.proc.returncode}"
            log.error("engine exited", extra={"variant": backend.variant, "code": engine.proc.returncode})

    async def stop(self) -> None:
        self.stopping = True
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        engines = [b.engine for b in self.backends.values() if b.engine is not None]
        await asyncio.gather(*(engine.stop(self.settings.engine_stop_grace_s) for engine in engines))
        for backend in self.backends.values():
            backend.up = False
