"""Build the gateway: `create_app(settings)` wires settings, variants, backends, metrics and routes once.

Everything lives on `app.state.gateway` (no module-level singletons), so tests
and the demo can run several gateways in one process. The lifespan opens the
shared HTTP client and starts the engine supervisor in the background: the
gateway answers `/health` at once, `/ready` when every engine is up.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import FastAPI

from app.api.errors import install_error_handlers
from app.api.middleware import RequestGuard
from app.api.routes import chat, completions, experiments, health, metrics, models
from app.config.variants import GatewayConfig, load_config
from app.core.config import Settings
from app.core.state import GatewayState
from app.engines.footprint import measure
from app.engines.supervisor import Supervisor, build_backends
from app.logs import configure_logging
from app.metrics import GatewayMetrics, GpuMemoryReader
from app.reliability.policy import load_policy
from app.routing.arm_stats import ExperimentStats
from app.serving.client import build_upstream_client
from pruning.errors import UserError

log = logging.getLogger("moeprune.gateway")


def build_state(settings: Settings, config: GatewayConfig, work_dir: Path) -> GatewayState:
    metrics = GatewayMetrics()
    policies, footprints = {}, {}
    for name, variant in config.variants.items():
        policies[name] = load_policy(variant.report_card)
        base = config.variants[variant.base].model if variant.base else None
        footprints[name] = measure(variant.model, base) if variant.model else None
    backends = build_backends(config, settings, work_dir)
    for name, backend in backends.items():
        metrics.register_variant(name, footprints[name], policies[name].baselines, backend.managed)
    stats = {name: ExperimentStats.for_arms(experiment.arms) for name, experiment in config.experiments.items()}
    return GatewayState(settings=settings, config=config, backends=backends, metrics=metrics, policies=policies,
                        footprints=footprints, experiment_stats=stats, api_keys=settings.api_key_set(),
                        gpu=GpuMemoryReader.create())


def create_app(settings: Settings, config: GatewayConfig | None = None) -> FastAPI:
    """The gateway app for `settings` (and `config`, else the file at `settings.config_path`)."""
    configure_logging(settings.log_level)
    if config is None:
        if settings.config_path is None:
            raise UserError("no variants file: pass --config variants.yaml (or set MOEPRUNE_CONFIG_PATH)")
        config = load_config(settings.config_path)
    scratch = None if settings.work_dir else tempfile.TemporaryDirectory(prefix="moeprune-gateway-")
    work_dir = Path(settings.work_dir or scratch.name)
    gateway = build_state(settings, config, work_dir)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with build_upstream_client(settings) as client:
            gateway.client = client
            gateway.supervisor = Supervisor(gateway.backends, client, settings,
                                            on_restart=lambda v: gateway.metrics.restarts.labels(v).inc())
            gateway.supervisor.start()
            try:
                yield
            finally:
                await gateway.supervisor.stop()
                if scratch is not None:
                    scratch.cleanup()
                log.info("gateway stopped; every engine stopped")

    app = FastAPI(title="moeprune gateway", version="0.1.0", lifespan=lifespan,
                  description="OpenAI-compatible gateway for pruned MoE variants, with A/B experiments, "
                              "per-response reliability flags and Prometheus metrics.")
    app.state.gateway = gateway
    install_error_handlers(app)
    for module in (chat, completions, models, experiments, health, metrics):
        app.include_router(module.router)
    app.add_middleware(RequestGuard, max_body_bytes=settings.max_request_bytes)
    return app
