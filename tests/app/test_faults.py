"""Faults: an engine dies under load, is restarted, and nothing is left behind at shutdown.

Runs last (marker `shuts_down_gateway`): it ends by stopping the shared gateway.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time

import httpx
import psutil
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.shuts_down_gateway]


def short_request(client: httpx.Client, variant: str) -> tuple[str, int | str, float]:
    started = time.monotonic()
    try:
        response = client.post("/v1/completions", json={"model": variant, "prompt": "The kidney", "max_tokens": 3})
        outcome = response.status_code
    except httpx.HTTPError as exc:
        outcome = type(exc).__name__
    return variant, outcome, time.monotonic() - started


def load_until(stop: threading.Event, gateway, results: list) -> None:
    with httpx.Client(base_url=gateway.url, headers=gateway.headers, timeout=30) as client:
        while not stop.is_set():
            for variant in ("base", "pruned"):
                results.append(short_request(client, variant))


def alive(pid: int) -> bool:
    with contextlib.suppress(psutil.Error):
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    return False


def test_killed_engine_fails_fast_is_restarted_and_nothing_is_orphaned(gateway):
    pruned_root = gateway.engine_roots()["pruned"]
    old_group = [p.pid for p in [pruned_root, *pruned_root.children(recursive=True)]]

    # Load on both variants is running, and a long stream from the pruned engine is
    # in flight, when the engine dies. The kill follows the stream's first chunk at
    # once: a tiny model can finish 250 tokens in well under a second.
    results: list = []
    stop = threading.Event()
    load = threading.Thread(target=load_until, args=(stop, gateway, results))
    load.start()
    deadline = time.monotonic() + 60
    while len(results) < 4:
        assert time.monotonic() < deadline, "no load requests completed"
        time.sleep(0.05)
    stream_lines: list[str] = []
    with httpx.stream(
        "POST",
        gateway.url + "/v1/completions",
        headers=gateway.headers,
        timeout=60,
        json={"model": "pruned", "prompt": "x", "max_tokens": 250, "ignore_eos": True, "stream": True},
    ) as stream:
        lines = stream.iter_lines()
        stream_lines.append(next(lines))
        kill_index = len(results)
        pruned_root.send_signal(signal.SIGKILL)  # a crash: no graceful shutdown
        stream_lines.extend(line for line in lines if line)
    time.sleep(6)
    stop.set()
    load.join(timeout=60)
    # The interrupted stream ended (no hang) with an OpenAI error event, then [DONE].
    assert stream_lines[-1] == "data: [DONE]"
    assert "error" in json.loads(stream_lines[-2].removeprefix("data: "))

    after_kill = results[kill_index:]
    pruned_outcomes = {outcome for variant, outcome, _ in after_kill if variant == "pruned"}
    base_outcomes = {outcome for variant, outcome, _ in after_kill if variant == "base"}
    assert pruned_outcomes & {502, 503}, pruned_outcomes
    assert pruned_outcomes <= {200, 502, 503}, pruned_outcomes
    assert base_outcomes == {200}, base_outcomes  # the other variant keeps serving
    assert max(elapsed for variant, outcome, elapsed in after_kill if outcome != 200) < 10

    # The supervisor restarts the engine; the variant serves again.
    deadline = time.monotonic() + 300
    while httpx.get(gateway.url + "/ready", timeout=10).status_code != 200:
        assert time.monotonic() < deadline, gateway.log_tail()
        time.sleep(1)
    with httpx.Client(base_url=gateway.url, headers=gateway.headers, timeout=60) as client:
        assert short_request(client, "pruned")[1] == 200
    metrics = httpx.get(gateway.url + "/metrics", timeout=10).text
    assert 'moeprune_backend_restarts_total{variant="pruned"} 1.0' in metrics
    assert not any(alive(pid) for pid in old_group), "the crashed engine's workers were left running"

    # Graceful shutdown stops every engine process: no orphans.
    descendants = [p.pid for p in psutil.Process(gateway.proc.pid).children(recursive=True)]
    assert len(descendants) >= 4  # two engines, each an API server plus engine-core processes
    # uvicorn re-raises the SIGTERM after its graceful shutdown, hence -SIGTERM as well as 0.
    assert gateway.shutdown() in (0, -signal.SIGTERM)
    assert "every engine stopped" in gateway.log_tail()
    time.sleep(1)
    survivors = [pid for pid in descendants if alive(pid)]
    assert not survivors, f"orphaned engine processes: {survivors}"
    assert not any(alive(pid) for pid in [gateway.proc.pid])
    assert os.path.exists(gateway.log_path)
