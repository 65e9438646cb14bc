"""Build the gateway: `create_app(settings)` wires settings, variants, backends, metrics and routes once.

Everything lives on `app.state.gateway` (no module-level singletons), so tests
and the demo can run several gateways in one process. The lifespan opens the
shared HTTP client and starts the engine supervisor in the background: the
gateway answers `/health` at once, `/ready` when every engine is up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import FastAPI

from app.api.auth import ApiKeyAuth, KeyStore, is_loopback, public_paths, refuse_open_gateway
from app.api.errors import install_error_handlers
from app.api.fast_routes import CompletionRoutes
from app.api.middleware import BodyCap, RequestId
from app.api.routes import (
    admin,
    chat,
    completions,
    experiments,
    feedback,
    health,
    metrics,
    models,
    recertify,
    telemetry,
)
from app.api.send_timeout import SendTimeout
from app.config.settings import Settings
from app.config.variants import GatewayConfig, load_config
from app.engines.footprint import declared, measure
from app.engines.pidfile import sweep_stale_engines
from app.engines.supervisor import Supervisor, build_backends, upstream_tls
from app.experiments.metrics import ExperimentMetrics
from app.experiments.reload import reload_on_sighup
from app.experiments.service import ExperimentService
from app.guard.gates import load_gates
from app.logs import configure_logging
from app.metrics import GatewayMetrics, GpuMemoryReader
from app.reliability.live import LiveCertificates
from app.reliability.live_cards import certificate_levels
from app.reliability.live_sync import LiveSync
from app.reliability.policy import load_policy
from app.reliability.startup import load_variant_reliability
from app.serving.client import build_upstream_client
from app.spans import Spans, traces_endpoint
from app.state import GatewayState
from app.telemetry.service import RoutingTelemetry
from moeprune.errors import UserError
from moeprune.formats.uneven_serving import check_servable
from moeprune.version import package_version

log = logging.getLogger("moeprune.gateway")


def build_state(settings: Settings, config: GatewayConfig, work_dir: Path, keys: KeyStore) -> GatewayState:
    metrics = GatewayMetrics()
    policies, footprints, certification = {}, {}, {}
    gates = load_gates(config)
    for name, variant in config.variants.items():
        policies[name] = load_policy(variant.report_card)
        # First: a card certifying other weights stops the start before any engine is launched.
        certification[name] = load_variant_reliability(name, variant, gates.get(name))
        base = config.variants[variant.base].model if variant.base else None
        footprints[name] = (
            measure(variant.model, base)
            if variant.model
            else declared(f"variants.{name}", variant.manifest, variant.report_card)
        )
        if variant.model and (Path(variant.model) / "config.json").is_file():
            # Uneven expert counts need this package's vLLM plugin; say so before any engine starts.
            check_servable(variant.model)
    backends = build_backends(config, settings, work_dir)
    for name, backend in backends.items():
        metrics.register_variant(name, footprints[name], policies[name].baselines, backend.managed)
    experiments = ExperimentService(settings, config, ExperimentMetrics(metrics.registry))
    live = LiveCertificates(
        levels=certificate_levels(config), max_answers=settings.live_max_answers, retention_s=settings.live_retention_s
    )
    metrics.watch_live(live)
    telemetry = RoutingTelemetry.from_config(config)
    if telemetry is not None:
        metrics.watch_drift({name: window.ratio for name, (_, window) in telemetry.drift.items()})
    return GatewayState(
        settings=settings,
        config=config,
        backends=backends,
        metrics=metrics,
        policies=policies,
        footprints=footprints,
        experiments=experiments,
        keys=keys,
        gpu=GpuMemoryReader.create(),
        gates=gates,
        telemetry=telemetry,
        certification=certification,
        live=live,
        spans=spans_of(settings),
    )


def spans_of(settings: Settings) -> Spans:
    try:
        return Spans.from_endpoint(traces_endpoint(settings.otlp_traces_endpoint))
    except ValueError as exc:
        raise UserError(str(exc)) from None


def create_app(settings: Settings, config: GatewayConfig | None = None) -> FastAPI:
    """The gateway app for `settings` (and `config`, else the file at `settings.config_path`)."""
    configure_logging(settings.log_level)
    # Keys first: an empty keys file or an open non-loopback gateway stops the start before anything runs.
    keys = KeyStore.from_settings(settings)
    refuse_open_gateway(settings, keys)
    if config is None:
        if settings.config_path is None:
            raise UserError("no variants file: pass --config variants.yaml (or set MOEPRUNE_CONFIG_PATH)")
        config = load_config(settings.config_path)
    scratch: tempfile.TemporaryDirectory[str] | None = None
    if settings.work_dir is not None:
        work_dir = Path(settings.work_dir)
    else:
        scratch = tempfile.TemporaryDirectory(prefix="moeprune-gateway-")
        work_dir = Path(scratch.name)
    gateway = build_state(settings, config, work_dir, keys)
    tls = upstream_tls(config, gateway.backends)  # https engines: verified against their tls.ca_file

    # Live fallbacks persist in the experiment database, through its one store thread.
    live_sync = LiveSync(
        gateway.live, gateway.experiments.store, gateway.experiments.recorder, settings.experiment_flush_interval_s
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with build_upstream_client(settings, tls) as client:
            gateway.client = client
            gateway.supervisor = Supervisor(
                gateway.backends, client, settings, on_restart=lambda v: gateway.metrics.restarts.labels(v).inc()
            )
            try:
                # Engines a SIGKILLed earlier gateway left on this work dir (fixed MOEPRUNE_WORK_DIR).
                await asyncio.to_thread(sweep_stale_engines, work_dir)
                # Inside the try: when the second variant fails to launch, the first is stopped.
                gateway.supervisor.start()
                await gateway.experiments.start()
                await live_sync.start()
                with reload_on_sighup(gateway):
                    yield
            finally:
                await live_sync.stop()
                await gateway.experiments.stop()
                await gateway.supervisor.stop()
                await asyncio.to_thread(gateway.spans.shutdown)  # flush the last spans (bounded by the SDK)
                if scratch is not None:
                    scratch.cleanup()
                log.info("gateway stopped; every engine stopped")

    app = FastAPI(
        title="moeprune gateway",
        version=package_version(),
        lifespan=lifespan,
        description="OpenAI-compatible gateway for pruned MoE variants, with A/B experiments, "
        "per-response reliability flags and Prometheus metrics.",
    )
    app.state.gateway = gateway
    install_error_handlers(app)
    for module in (chat, completions, models, experiments, feedback, admin, recertify, health, metrics, telemetry):
        app.include_router(module.router)
    # add_middleware wraps what is there, so the last added runs first: request id, key, the body, and then
    # (innermost) the two completion endpoints, served without FastAPI's routing (app/api/fast_routes.py).
    app.add_middleware(
        CompletionRoutes,
        routes={chat.PATH: chat.route, completions.PATH: completions.route},
        exception_handlers=app.exception_handlers,
    )
    app.add_middleware(
        BodyCap, max_body_bytes=settings.max_request_bytes, body_timeout_s=settings.request_body_timeout_s
    )
    app.add_middleware(ApiKeyAuth, keys=keys, public=public_paths(settings), open_is_trusted=is_loopback(settings.host))
    app.add_middleware(RequestId)
    # Outermost: every send, middleware error answers included, is bounded for slow readers.
    app.add_middleware(SendTimeout, seconds=settings.send_timeout_s)
    return app
