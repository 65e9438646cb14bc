"""/metrics: engine memory is read off the event loop, at most once per cache period.

A real engine process tree (tests/support/fake_engine.py under its keeper); the GPU
reader stands in for NVML on a machine without a GPU, as a slow driver call.
"""

from __future__ import annotations

import asyncio
import time

from prometheus_client.parser import text_string_to_metric_families

from app.metrics import GatewayMetrics
from tests.app.supervised import supervised


class SlowGpu:
    def __init__(self) -> None:
        self.calls = 0

    def bytes_used_by(self, pids: list[int]) -> int:
        self.calls += 1
        time.sleep(0.5)
        return 4096 * len(pids)


async def test_engine_memory_is_read_off_the_event_loop_and_cached(tmp_path):
    async with supervised({"a": {"model": str(tmp_path)}}, tmp_path / "work") as (supervisor, backends):
        assert await supervisor.wait_all_up(20)
        metrics, gpu, gaps = GatewayMetrics(), SlowGpu(), []

        async def tick() -> None:
            while True:
                started = time.monotonic()
                await asyncio.sleep(0.01)
                gaps.append(time.monotonic() - started)

        ticker = asyncio.create_task(tick())
        try:
            await asyncio.gather(metrics.refresh(backends, gpu), metrics.refresh(backends, gpu))  # two scrapers
            await metrics.refresh(backends, gpu)  # within the cache period
        finally:
            ticker.cancel()
        assert max(gaps) < 0.2, f"the event loop stalled for {max(gaps):.2f}s"
        assert gpu.calls == 1
        families = {f.name: f for f in text_string_to_metric_families(metrics.render().decode())}
        [resident] = [s.value for s in families["moeprune_engine_resident_memory_bytes"].samples]
        [gpu_bytes] = [s.value for s in families["moeprune_engine_gpu_memory_bytes"].samples]
        assert resident > 5e6 and gpu_bytes == 4096  # the fake engine's one process, not the keeper
        assert [s.value for s in families["moeprune_backend_up"].samples] == [1.0]
