"""Everything one gateway instance holds, built once by `create_app` and kept on `app.state.gateway`."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import httpx

from app.config.variants import GatewayConfig
from app.core.config import Settings
from app.engines.backends import Backend
from app.engines.footprint import Footprint
from app.engines.supervisor import Supervisor
from app.metrics import GatewayMetrics, GpuMemoryReader
from app.reliability.policy import FlagPolicy
from app.routing.arm_stats import ExperimentStats


@dataclass
class GatewayState:
    settings: Settings
    config: GatewayConfig
    backends: dict[str, Backend]
    metrics: GatewayMetrics
    policies: dict[str, FlagPolicy]
    footprints: dict[str, Footprint | None]
    experiment_stats: dict[str, ExperimentStats]
    api_keys: frozenset[str]
    gpu: GpuMemoryReader | None = None
    client: httpx.AsyncClient | None = None
    supervisor: Supervisor | None = None
    rng: random.Random = field(default_factory=random.Random)
