"""Everything one gateway instance holds, built once by `create_app` and kept on `app.state.gateway`."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import httpx

from app.config.settings import Settings
from app.config.variants import GatewayConfig
from app.engines.backends import Backend
from app.engines.footprint import Footprint
from app.engines.supervisor import Supervisor
from app.experiments.service import ExperimentService
from app.guard.gates import LoadedGate
from app.metrics import GatewayMetrics, GpuMemoryReader
from app.reliability.live import LiveCertificates
from app.reliability.policy import FlagPolicy
from app.reliability.startup import VariantReliability
from app.serving.admission import Admission
from app.serving.salt import CacheSalt
from app.spans import Spans
from app.telemetry.service import RoutingTelemetry

if TYPE_CHECKING:  # the HTTP layer builds the key store; the state only holds it
    from app.api.auth import KeyStore


@dataclass
class GatewayState:
    settings: Settings
    config: GatewayConfig
    backends: dict[str, Backend]
    metrics: GatewayMetrics
    policies: dict[str, FlagPolicy]
    footprints: dict[str, Footprint | None]
    experiments: ExperimentService  # per-arm state in SQLite/PostgreSQL, verdicts, guardrails, feedback
    keys: KeyStore  # the API keys (digests), re-read when the keys file changes
    gpu: GpuMemoryReader | None = None
    client: httpx.AsyncClient | None = None
    supervisor: Supervisor | None = None
    rng: random.Random = field(default_factory=random.Random)
    admission: Admission = field(default_factory=Admission)  # sequences in flight per API key
    cache_salt: CacheSalt = field(default_factory=CacheSalt)  # per-key prefix-cache salt (secret per gateway)
    gates: dict[str, LoadedGate] = field(default_factory=dict)  # guarded variant -> its domain gate (app/guard)
    telemetry: RoutingTelemetry | None = None  # routed-experts counts and drift windows (app/telemetry)
    # variant -> its certificates and domain split (app/reliability/startup.py); every variant has an entry
    certification: dict[str, VariantReliability] = field(default_factory=dict)
    # served answers vs feedback (app/reliability/live.py)
    live: LiveCertificates = field(default_factory=LiveCertificates)
    spans: Spans = field(default_factory=Spans)  # OTLP spans, when an endpoint is set (app/spans.py)
