"""Every Prometheus metric the gateway exports, in one place (names: docs/contracts.md).

One `GatewayMetrics` per app, each with its own registry, so two gateways in one
process (tests, the demo) never share counters. Labels are only variant,
experiment, status, flag and kind: never a user id, session id or prompt text.
Live values (backend up, engine memory) are refreshed at scrape time; engine
memory off the event loop and at most every MEMORY_CACHE_S.

Several worker processes (app/workers) write their values to files in one
directory (prometheus_client's multiprocess mode, chosen by the process before
any metric exists) and every worker's /metrics reads them all. Each gauge says
how the processes' values combine (`multiprocess_mode`, ignored in one process):
`livesum` for amounts, `livemax`/`livemin` for states every process shares,
`livemostrecent` for values recomputed from the shared database. A single
process keeps the plain in-memory registry (no file writes on the request path).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, values
from prometheus_client.multiprocess import MultiProcessCollector

from app.engines.backends import Backend
from app.engines.footprint import Footprint
from app.reliability.live import LiveCertificates

# Whole-request latency of LLM calls spans ~50 ms (a cached short answer) to minutes.
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300)
TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
# A gate decision costs well under a millisecond; a cascade costs a second answer (seconds).
GUARD_BUCKETS = (0.0005, 0.001, 0.0025, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
# Engine memory changes slowly; Prometheus scrapes every 15 s or so, several scrapers may overlap.
MEMORY_CACHE_S = 2.0


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry(auto_describe=True)
        self._memory_lock = asyncio.Lock()
        self._memory_read_at = float("-inf")
        self._children: dict[tuple, Any] = {}  # (id(metric), labels) -> its child series (_series)
        self.shared_dir = shared_metrics_dir()  # None: this process alone (the plain registry)
        # Function gauges, re-set from their functions before a read when values live in files (which only
        # hold what was set): (child, function).
        self._functions: list[tuple[Any, Callable[[], float]]] = []
        p = "moeprune_"
        self.requests = Counter(
            p + "requests_total", "Requests answered", ["variant", "experiment", "status"], registry=registry
        )
        self.duration = Histogram(
            p + "request_duration_seconds",
            "Whole-request latency",
            ["variant", "experiment"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.ttft = Histogram(
            p + "time_to_first_token_seconds",
            "Time to the first content token",
            ["variant", "experiment"],
            buckets=TTFT_BUCKETS,
            registry=registry,
        )
        self.prompt_tokens = Counter(p + "prompt_tokens_total", "Prompt tokens", ["variant"], registry=registry)
        self.completion_tokens = Counter(
            p + "completion_tokens_total", "Completion tokens", ["variant"], registry=registry
        )
        self.in_flight = Gauge(
            p + "requests_in_flight",
            "Requests being served",
            ["variant"],
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.flags = Counter(
            p + "reliability_flags_total",
            "Reliability flags raised",
            ["variant", "experiment", "flag"],
            registry=registry,
        )
        self.flag_baseline = Gauge(
            p + "reliability_flag_baseline_ratio",
            "Share of evaluated responses that raised the flag (report card base_rate)",
            ["variant", "flag"],
            registry=registry,
            multiprocess_mode="livemax",
        )
        # Up only while every process (the engines' owner and each worker) finds the engine healthy.
        self.backend_up = Gauge(
            p + "backend_up",
            "1 when the variant's engine is healthy",
            ["variant"],
            registry=registry,
            multiprocess_mode="livemin",
        )
        self.restarts = Counter(p + "backend_restarts_total", "Engine restarts", ["variant"], registry=registry)
        self.assignments = Counter(
            p + "experiment_assignments_total",
            "Requests assigned to an arm",
            ["experiment", "variant"],
            registry=registry,
        )
        self.weight_bytes = Gauge(
            p + "variant_weight_bytes",
            "Weight bytes the engine loads",
            ["variant", "source"],
            registry=registry,
            multiprocess_mode="livemax",
        )
        self.experts = Gauge(
            p + "variant_experts",
            "Routed experts over all MoE layers",
            ["variant", "kind", "source"],
            registry=registry,
            multiprocess_mode="livemax",
        )
        self.bytes_saved = Gauge(
            p + "variant_bytes_saved",
            "Weight bytes saved against the base",
            ["variant", "source"],
            registry=registry,
            multiprocess_mode="livemax",
        )
        self.bytes_saved_ratio = Gauge(
            p + "variant_bytes_saved_ratio",
            "Bytes saved / base bytes",
            ["variant", "source"],
            registry=registry,
            multiprocess_mode="livemax",
        )
        # Engine memory: read by the process that owns the engines (workers see no engine process).
        self.resident_memory = Gauge(
            p + "engine_resident_memory_bytes",
            "RSS of the engine's process tree",
            ["variant"],
            registry=registry,
            multiprocess_mode="livemax",
        )
        self.gpu_memory = Gauge(
            p + "engine_gpu_memory_bytes",
            "GPU memory of the engine's processes (NVML)",
            ["variant"],
            registry=registry,
            multiprocess_mode="livemax",
        )
        # Guards (app/guard): variant = the guarded variant; guard = domain_gate | cascade.
        self.guard_decisions = Counter(
            p + "guard_decisions_total",
            "Guard decisions (pass, fallback, none, escalated, unavailable)",
            ["variant", "guard", "decision"],
            registry=registry,
        )
        self.guard_extra_seconds = Histogram(
            p + "guard_extra_seconds",
            "Latency a guard added (gate scoring, the cascade's second answer)",
            ["variant", "guard"],
            buckets=GUARD_BUCKETS,
            registry=registry,
        )
        # The certified cascade and guard cascades: answers re-asked of the fallback, by the flag that escalated
        # (variant = the one escalated from; flag = the first cascade flag raised, a fixed set).
        self.escalations = Counter(
            p + "cascade_escalations_total",
            "Answers escalated to the fallback (the fallback's answer was served)",
            ["variant", "flag"],
            registry=registry,
        )
        self.pruned_expert_hit_ratio = Gauge(
            p + "pruned_expert_hit_ratio",
            "Share of the base's routed (token, expert) pairs in the window on experts this variant removed",
            ["variant"],
            registry=registry,
            multiprocess_mode="livemax",
        )
        # Live re-certification (app/reliability/live.py): per (variant, domain), read from its state at scrape.
        # Each worker keeps its own window: across workers the worst (max) error and bound, the summed labels.
        self.live_realised_error = Gauge(
            p + "live_realised_error",
            "Share wrong among labelled unflagged answers since the pair's window opened (NaN without labels)",
            ["variant", "domain"],
            registry=registry,
            multiprocess_mode="livemax",
        )
        self.live_error_upper_bound = Gauge(
            p + "live_error_upper_bound",
            "One-sided Clopper-Pearson upper bound on that error at the certificate's delta (1 without labels)",
            ["variant", "domain"],
            registry=registry,
            multiprocess_mode="livemax",
        )
        self.live_labelled_answers = Gauge(
            p + "live_labelled_answers",
            "Labelled unflagged answers in the window",
            ["variant", "domain"],
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.live_fallback_active = Gauge(
            p + "live_fallback_active",
            "1 while live feedback has every answer of the pair flagged (until moeprune recertify)",
            ["variant", "domain"],
            registry=registry,
            multiprocess_mode="livemax",
        )
        self.live_alpha = Gauge(
            p + "live_certificate_alpha",
            "The alpha the pair's certificate promises",
            ["variant", "domain"],
            registry=registry,
            multiprocess_mode="livemax",
        )

    def watch_live(self, live: LiveCertificates) -> None:
        """Gauges for every pair live re-certification tracks, now and as new pairs appear."""

        def register(variant: str, domain: str) -> None:
            def pair():
                return live.pairs[(variant, domain)]

            self._set_function(self.live_realised_error.labels(variant, domain), lambda: pair().realised_error)
            self._set_function(self.live_error_upper_bound.labels(variant, domain), lambda: pair().upper_bound)
            self._set_function(self.live_labelled_answers.labels(variant, domain), lambda: pair().labelled)
            self._set_function(self.live_fallback_active.labels(variant, domain), lambda: 1 if pair().fallback else 0)
            self._set_function(self.live_alpha.labels(variant, domain), lambda: pair().levels.alpha)

        for variant, domain in list(live.pairs):
            register(variant, domain)
        live.on_new_pair = register

    def register_variant(
        self, variant: str, footprint: Footprint | None, baselines: dict[str, float], managed: bool
    ) -> None:
        """Create every per-variant series up front, so dashboards see zeros instead of gaps."""
        self.in_flight.labels(variant).set(0)
        self.backend_up.labels(variant).set(0)
        self.prompt_tokens.labels(variant)
        self.completion_tokens.labels(variant)
        if managed:
            self.restarts.labels(variant)
        for flag, ratio in baselines.items():
            self.flag_baseline.labels(variant, flag).set(ratio)
        if footprint is None:
            return
        # source: `measured` (the gateway read the managed variant's files) or `declared` (a url: variant's
        # pruning manifest or report card says so; the gateway cannot see the engine's files).
        source = footprint.source
        if footprint.weight_bytes is not None:
            self.weight_bytes.labels(variant, source).set(footprint.weight_bytes)
        if footprint.experts_before_total is not None and footprint.experts_kept_total is not None:
            self.experts.labels(variant, "kept", source).set(footprint.experts_kept_total)  # totals over MoE layers
            self.experts.labels(variant, "total", source).set(footprint.experts_before_total)
        if footprint.bytes_saved is not None:
            self.bytes_saved.labels(variant, source).set(footprint.bytes_saved)
        if footprint.bytes_saved_ratio is not None:
            self.bytes_saved_ratio.labels(variant, source).set(footprint.bytes_saved_ratio)

    def watch_drift(self, ratios: dict[str, Callable[[], float]]) -> None:
        """The hit-ratio gauges read their sliding windows at scrape time (NaN: no traffic in the window)."""
        for variant, ratio in ratios.items():
            self._set_function(self.pruned_expert_hit_ratio.labels(variant), ratio)

    def _set_function(self, child, function: Callable[[], float]) -> None:
        child.set_function(function)
        if self.shared_dir is not None:
            self._functions.append((child, function))

    def observe_response(
        self,
        variant: str,
        experiment: str,
        status: int,
        duration_s: float,
        ttft_s: float | None = None,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
        flags: Sequence[str] = (),
    ) -> None:
        series = self._series
        series(self.requests, variant, experiment, str(status)).inc()
        series(self.duration, variant, experiment).observe(duration_s)
        if ttft_s is not None:
            series(self.ttft, variant, experiment).observe(ttft_s)
        if prompt_tokens:
            series(self.prompt_tokens, variant).inc(prompt_tokens)
        if completion_tokens:
            series(self.completion_tokens, variant).inc(completion_tokens)
        for flag in flags:
            series(self.flags, variant, experiment, flag).inc()

    def _series(self, metric, *labels: str):
        """`metric.labels(*labels)`, remembered: `labels()` takes a lock and builds its key on every call, and
        a request records up to six series (none is ever removed, so a remembered child stays the live one)."""
        key = (id(metric), labels)
        child = self._children.get(key)
        if child is None:
            child = metric.labels(*labels)
            if len(self._children) < 65536:
                self._children[key] = child
        return child

    async def refresh(self, backends: dict[str, Backend], gpu: GpuMemoryReader | None) -> None:
        """Update the live gauges just before a scrape.

        Walking process trees and asking NVML take milliseconds to seconds (a busy
        /proc, a slow driver): that runs in a thread, at most once per
        MEMORY_CACHE_S however many scrapers there are, so requests never wait on it.
        """
        for name, backend in backends.items():
            self.backend_up.labels(name).set(1 if backend.up else 0)
            self.in_flight.labels(name).set(backend.in_flight)
        for child, function in self._functions:
            child.set(function())
        async with self._memory_lock:
            if time.monotonic() - self._memory_read_at < MEMORY_CACHE_S:
                return
            readings = await asyncio.to_thread(engine_memory, backends, gpu)
            self._memory_read_at = time.monotonic()
        for name, (resident, gpu_bytes) in readings.items():
            self.resident_memory.labels(name).set(resident)
            if gpu_bytes is not None:
                self.gpu_memory.labels(name).set(gpu_bytes)

    def render(self) -> bytes:
        if self.shared_dir is None:
            return generate_latest(self.registry)
        # Every process's files (dead workers' counters included: they were counted), combined per gauge mode.
        combined = CollectorRegistry()
        MultiProcessCollector(combined, path=self.shared_dir)
        return generate_latest(combined)


def shared_metrics_dir() -> str | None:
    """The directory this process writes its metric values to, or None when they stay in memory.

    prometheus_client picks the value store once per process (from PROMETHEUS_MULTIPROC_DIR, before the
    first metric); app/workers/shared_metrics.py makes that choice for a worker gateway's processes."""
    if getattr(values.ValueClass, "_multiprocess", False):
        return os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    return None


def engine_memory(backends: dict[str, Backend], gpu: GpuMemoryReader | None) -> dict[str, tuple[int, int | None]]:
    """variant -> (resident bytes, GPU bytes or None) of each managed engine's processes (blocking)."""
    readings = {}
    for name, backend in backends.items():
        if backend.engine is None:
            continue
        tree = backend.engine.process_tree()
        resident = backend.engine.resident_bytes()
        readings[name] = (resident, gpu.bytes_used_by([proc.pid for proc in tree]) if gpu is not None else None)
    return readings


class GpuMemoryReader:
    """Per-process GPU memory through NVML; `create()` returns None without NVML or a GPU."""

    def __init__(self, nvml) -> None:
        self.nvml = nvml

    @classmethod
    def create(cls) -> GpuMemoryReader | None:
        try:
            import pynvml  # provided by nvidia-ml-py on GPU installs
        except ImportError:
            return None
        try:
            pynvml.nvmlInit()
            if pynvml.nvmlDeviceGetCount() == 0:
                return None
        except pynvml.NVMLError:
            return None
        return cls(pynvml)

    def bytes_used_by(self, pids: list[int]) -> int:
        wanted, total = set(pids), 0
        with contextlib.suppress(self.nvml.NVMLError):
            for index in range(self.nvml.nvmlDeviceGetCount()):
                handle = self.nvml.nvmlDeviceGetHandleByIndex(index)
                for proc in self.nvml.nvmlDeviceGetComputeRunningProcesses(handle):
                    if proc.pid in wanted and proc.usedGpuMemory:
                        total += proc.usedGpuMemory
        return total
