"""Keep every variant's backend serving: start managed engines, watch them, restart crashes and hangs.

Managed engines start concurrently. Each backend has one watch task: it probes
the engine, marks the backend up or down (the proxy answers 503 while down), and
restarts an engine that exited or hung (alive but failing probes for
`engine_hung_after_s`) with exponential backoff. A launch that raises is logged
and retried the same way, so a variant is never silently left down. Remote
backends are only probed. `stop()` ends the watch tasks first, so no engine is
restarted while the gateway shuts down, then stops every engine.

A probe checks identity, not just a listener: `/health` answers 200 AND
`/v1/models`, asked with the backend's API key, lists the expected model. Each
managed engine has a random key (or the variant's configured one), so an orphan
of an earlier gateway or a foreign server on a fixed port is never taken for
ours; on start the listening socket must also belong to the engine's processes.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import shlex
import ssl
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from app.config.settings import Settings
from app.config.variants import GatewayConfig, Variant
from app.engines.backends import Backend
from app.engines.command import EngineSpec
from app.engines.process import EngineProcess, EngineStartError, probe_health, served_models
from app.serving.tls import client_context, origin
from moeprune.errors import UserError

log = logging.getLogger("moeprune.supervisor")
UNHEALTHY_AFTER_PROBES = 3


def configured_key(name: str, variant: Variant) -> str | None:
    """The variant's upstream key from `api_key_file` / `api_key_env`; None when neither is set."""
    field = f"variants.{name}"
    if variant.api_key_file is not None and variant.api_key_env is not None:
        raise UserError(f"{field}: give one of api_key_file or api_key_env, not both")
    if variant.api_key_file is not None:
        try:
            key = Path(variant.api_key_file).read_text().strip()
        except OSError as exc:
            raise UserError(f"{field}.api_key_file: cannot read {variant.api_key_file}: {exc.strerror}") from exc
        if not key:
            raise UserError(f"{field}.api_key_file: {variant.api_key_file} is empty; put the engine's key in it")
        return key
    if variant.api_key_env is not None:
        key = os.environ.get(variant.api_key_env, "").strip()
        if not key:
            raise UserError(f"{field}.api_key_env: environment variable {variant.api_key_env} is not set or empty")
        return key
    return None


def build_backends(config: GatewayConfig, settings: Settings, work_dir: Path) -> dict[str, Backend]:
    launcher = shlex.split(settings.launcher) if settings.launcher else config.launcher_argv()
    backends = {}
    for name, variant in config.variants.items():
        limit = variant.max_in_flight or settings.max_in_flight_per_variant
        key = configured_key(name, variant)
        if not variant.managed:
            assert variant.url is not None  # Variant.model_or_url: exactly one of model / url is set
            tls = client_context(name, variant.tls) if variant.url.startswith("https://") else None
            backends[name] = Backend(
                name, variant.served_model_name, remote_url=variant.url, max_in_flight=limit, api_key=key, tls=tls
            )
            continue
        assert variant.model is not None  # managed means `model` is set
        options = variant.engine
        # A configured key lets other clients (e.g. a url: variant) reach this engine; otherwise a fresh
        # random one per gateway, so nothing but this gateway can use the engine.
        key = key or secrets.token_urlsafe(32)
        spec = EngineSpec(
            model=variant.model,
            port=options.port or 0,
            served_name=name,
            dtype=options.dtype,
            max_model_len=options.max_model_len,
            gpu_memory_utilization=options.gpu_memory_utilization,
            args=list(options.args),
            env=dict(options.env),
            launcher=launcher,
            api_key=key,
            tool_parser=variant.engine_tool_parser,
        )
        if options.kv_cache_bytes is not None:
            spec.kv_cache_bytes = options.kv_cache_bytes
        engine = EngineProcess(
            name,
            spec,
            work_dir / name,
            stop_grace=settings.engine_stop_grace_s,
            log_max_bytes=settings.engine_log_max_bytes,
        )
        backends[name] = Backend(name, name, engine=engine, max_in_flight=limit, api_key=key)
    return backends


def upstream_tls(config: GatewayConfig, backends: dict[str, Backend]) -> dict[tuple, ssl.SSLContext]:
    """(scheme, host, port) -> SSL context, for the engine transport; variants sharing an engine must agree."""
    contexts: dict[tuple, ssl.SSLContext] = {}
    owners: dict[tuple, str] = {}
    for name, backend in backends.items():
        if backend.tls is None:
            continue
        key = origin(backend.url)
        if key in owners and config.variants[owners[key]].tls != config.variants[name].tls:
            raise UserError(
                f"variants.{name}.tls: differs from variants.{owners[key]}.tls, which reaches the same "
                f"engine ({backend.url}); give both the same tls settings"
            )
        contexts.setdefault(key, backend.tls)
        owners.setdefault(key, name)
    return contexts


class Supervisor:
    def __init__(
        self,
        backends: dict[str, Backend],
        client: httpx.AsyncClient,
        settings: Settings,
        on_restart: Callable[[str], None] = lambda variant: None,
    ):
        self.backends = backends
        self.client = client
        self.settings = settings
        self.on_restart = on_restart
        self.tasks: list[asyncio.Task] = []
        self.stopping = False

    def start(self) -> None:
        """Launch every managed engine now and watch all backends in the background.

        A launch that raises (a launcher that does not exist, a work dir that cannot be
        created) is a configuration error: it raises UserError. The caller's `finally`
        must call `stop()`, which stops the engines that did start.
        """
        for backend in self.backends.values():
            if backend.engine is not None:
                try:
                    backend.engine.launch()
                except (OSError, ValueError) as exc:
                    log.error("engine launch failed", extra={"variant": backend.variant, "error": str(exc)})
                    raise UserError(
                        f"cannot start the engine of variant {backend.variant!r}: {exc}; "
                        "check its model, engine settings, the launcher and the work dir"
                    ) from exc
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

    async def probe(self, backend: Backend) -> bool:
        """Healthy AND the expected model, listed to our key (identity, not just a listener)."""
        url, headers = backend.url, backend.upstream_headers()
        errors: list[str] = []
        if not await probe_health(self.client, url, headers, errors):
            backend.extra["probe_error"] = errors[0] if errors else None
            return False
        backend.extra["probe_error"] = None
        models = await served_models(self.client, url, headers)
        if not models:
            return False
        if backend.served_model is None:  # a remote server: learn its model name once
            backend.served_model = next(iter(models))
        if backend.served_model not in models:
            return False
        # The engine's context bounds the max_tokens the gateway forwards (an omitted one included).
        backend.max_model_len = models[backend.served_model]
        return True

    async def _first_probe(self, backend: Backend, engine: EngineProcess) -> bool:
        """On start, also require that the listener on the port is the engine we launched."""
        if not await self.probe(backend):
            return False
        if not await asyncio.to_thread(engine.owns_listener, engine.spec.port):
            backend.last_error = f"port {engine.spec.port} answers, but not from this variant's engine"
            return False
        return True

    async def _watch(self, backend: Backend) -> None:
        if backend.engine is None:
            await self._watch_remote(backend)
        else:
            await self._watch_managed(backend, backend.engine)

    async def _watch_remote(self, backend: Backend) -> None:
        failed_probes = UNHEALTHY_AFTER_PROBES  # down until the first successful probe
        while not self.stopping:
            healthy = await self.probe(backend)
            failed_probes = 0 if healthy else failed_probes + 1
            backend.up = failed_probes < UNHEALTHY_AFTER_PROBES
            reason = backend.extra.get("probe_error")
            backend.last_error = (
                None
                if backend.up
                else (f"remote server {backend.url} is not healthy" + (f": {reason}" if reason else ""))
            )
            await asyncio.sleep(self.settings.health_interval_s)

    async def _watch_managed(self, backend: Backend, engine: EngineProcess) -> None:
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
                try:
                    engine.launch()
                except Exception as exc:  # noqa: BLE001 - any launch failure: log it and retry, never end the task
                    backend.last_error = f"engine launch failed: {exc}"
                    log.error(
                        "engine launch failed", exc_info=True, extra={"variant": backend.variant, "error": str(exc)}
                    )
                    continue
            first = False
            try:
                await engine.wait_healthy(
                    lambda: self._first_probe(backend, engine), self.settings.engine_start_timeout_s
                )
            except EngineStartError as exc:
                backend.last_error = str(exc)
                log.error("engine failed to start", extra={"variant": backend.variant, "error": str(exc)})
                continue
            backend.up, backend.last_error = True, None
            backoff = self.settings.restart_backoff_s
            log.info("engine up", extra={"variant": backend.variant, "url": engine.url})
            await self._watch_running(backend, engine)
            backend.up = False

    async def _watch_running(self, backend: Backend, engine: EngineProcess) -> None:
        """Return when the engine exited or hung; keep `up` in step with the probes meanwhile."""
        since_probe, failed_probes, last_ok = 0.0, 0, time.monotonic()
        while not self.stopping and engine.running():
            await asyncio.sleep(0.25)
            since_probe += 0.25
            if since_probe < self.settings.health_interval_s:
                continue
            since_probe = 0.0
            if await self.probe(backend):
                failed_probes, last_ok = 0, time.monotonic()
            else:
                failed_probes += 1
            # A busy engine can miss one probe; only repeated misses take it out of service.
            backend.up = failed_probes < UNHEALTHY_AFTER_PROBES
            hung_for = time.monotonic() - last_ok
            if engine.running() and hung_for >= self.settings.engine_hung_after_s:
                backend.up = False
                backend.last_error = f"engine alive but failing health checks for {hung_for:.0f}s"
                log.error("engine hung; killing it", extra={"variant": backend.variant, "failing_s": round(hung_for)})
                return
        if not self.stopping and not engine.running():
            backend.last_error = f"engine exited with code {engine.returncode}"
            log.error("engine exited", extra={"variant": backend.variant, "code": engine.returncode})

    async def stop(self) -> None:
        """Cancel the watch tasks, then stop every engine (bounded by the stop grace)."""
        self.stopping = True
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        engines = [b.engine for b in self.backends.values() if b.engine is not None]
        await asyncio.gather(*(engine.stop(self.settings.engine_stop_grace_s) for engine in engines))
        for backend in self.backends.values():
            backend.up = False

    def stop_blocking(self) -> None:
        """The same without an event loop: for exits that skipped the lifespan's shutdown."""
        self.stopping = True
        engines = [b.engine for b in self.backends.values() if b.engine is not None and b.engine.running()]
        trees = [(engine, engine.process_tree()) for engine in engines]
        for engine in engines:
            engine.terminate()
        deadline = time.monotonic() + self.settings.engine_stop_grace_s + 3
        for engine, tree in trees:
            engine.finish_stop(tree, deadline)
        for backend in self.backends.values():
            backend.up = False
