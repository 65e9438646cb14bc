"""`moeprune serve --workers 2`: two worker processes serve one port in front of engines the serve process owns.

Real processes on loopback, every wait bounded: both workers answer, /metrics adds up
what both counted whichever answers it, an experiment routes and counts the same in
both (through the shared store; a reload reaches both), a killed worker is replaced,
SIGTERM stops workers and engines, a SIGKILLed serve process leaves nothing serving,
and `--workers 1` is the one-process gateway.
"""

from __future__ import annotations

import contextlib
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import psutil
import pytest

from tests.app.workers.gateway_workers import (
    CHAT,
    chat,
    metric_total,
    requests_by_process,
    start,
    workers,
    write_variants,
)

EXPERIMENT = {"ab": {"arms": {"a": 50, "b": 50}}}
SESSIONS = [f"user-{index}" for index in range(12)]


def wait_for(condition, timeout: float, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := condition():
            return result
        time.sleep(interval)
    return condition()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    work = tmp_path_factory.mktemp("workers")
    running = start(write_variants(work / "variants.yaml", EXPERIMENT), work, "--workers", "2")
    try:
        running.wait_ready(timeout=90)
        assert wait_for(lambda: len(workers(running)) == 2, timeout=30), running.log_tail()
        yield running
    finally:
        running.shutdown(timeout=60)


def test_both_workers_answer_and_metrics_add_up_whichever_answers(gateway):
    sent = 0
    with ThreadPoolExecutor(8) as pool:
        while sent < 400:
            statuses = list(pool.map(lambda _: chat(gateway).status_code, range(40)))
            assert statuses == [200] * 40
            sent += 40
            counts = requests_by_process(gateway)
            if sum(1 for pid in (w.pid for w in workers(gateway)) if counts.get(pid, 0) > 0) == 2:
                break
    counts = requests_by_process(gateway)
    pids = [worker.pid for worker in workers(gateway)]
    assert all(counts.get(pid, 0) > 0 for pid in pids), (counts, pids)
    # Every scrape, whichever worker answers it, reports what both counted.
    for _ in range(6):
        text = httpx.get(gateway.url + "/metrics", timeout=10).text
        assert metric_total(text, "moeprune_requests_total") == sum(counts.values()) >= sent
    # every process finds the engine up (the owner's word, then each worker's own probes)
    assert wait_for(
        lambda: 'moeprune_backend_up{variant="a"} 1.0' in httpx.get(gateway.url + "/metrics", timeout=10).text,
        timeout=10,
    )
    # from the process owning the engine, once its sampler has run (a busy machine may take a few seconds)
    assert wait_for(
        lambda: (
            metric_total(httpx.get(gateway.url + "/metrics", timeout=10).text, "moeprune_engine_resident_memory_bytes")
            > 0
        ),
        timeout=20,
    )


def test_an_experiment_routes_and_counts_the_same_in_every_worker(gateway):
    before = httpx.get(gateway.url + "/v1/experiments/ab", headers=gateway.headers, timeout=10).json()
    already = sum(arm["requests"] for arm in before["arms"].values())
    arms: dict[str, set[str]] = {session: set() for session in SESSIONS}
    with ThreadPoolExecutor(8) as pool:
        for session, response in pool.map(lambda s: (s, chat(gateway, "ab", s)), SESSIONS * 6):
            assert response.status_code == 200
            arms[session].add(response.headers["x-moe-variant"])
    assert all(len(seen) == 1 for seen in arms.values()), arms  # sticky whichever worker answered
    assert {arm for seen in arms.values() for arm in seen} == {"a", "b"}

    def totals() -> list[int]:
        reports = [
            httpx.get(gateway.url + "/v1/experiments/ab", headers=gateway.headers, timeout=10).json() for _ in range(6)
        ]
        return [sum(arm["requests"] for arm in report["arms"].values()) - already for report in reports]

    # Each worker flushes its counts to the store within the flush interval; then any worker reports them all.
    assert wait_for(lambda: totals() == [len(SESSIONS) * 6] * 6, timeout=20), totals()


def test_feedback_reaches_the_worker_that_served_the_answer(gateway):
    served: dict[str, str] = {}  # completion id -> model asked (a variant, or the experiment)
    with ThreadPoolExecutor(8) as pool:
        for _ in range(10):
            before = requests_by_process(gateway)
            for model, response in pool.map(lambda m: (m, chat(gateway, m, f"s-{len(served)}")), ["a", "ab"] * 8):
                assert response.status_code == 200
                served[response.json()["id"]] = model
            after = requests_by_process(gateway)
            if all(after.get(w.pid, 0) > before.get(w.pid, 0) for w in workers(gateway)):
                break
    assert len(served) == 16

    def rate(completion_id: str) -> httpx.Response:
        return httpx.post(
            gateway.url + "/v1/feedback",
            headers=gateway.headers,
            json={"id": completion_id, "label": "good"},
            timeout=30,
        )

    with ThreadPoolExecutor(8) as pool:
        answers = dict(zip(served, pool.map(rate, served)))
    for completion_id, response in answers.items():
        assert response.status_code == 200, response.text  # whichever worker took the feedback
        body = response.json()
        assert body["label_status"] == "new" and body["domain"] == "all", body  # the live join, done once
        if served[completion_id] == "ab":
            assert body["experiment"] == "ab" and body["recorded"] is True, body


def test_a_reload_reaches_every_worker(gateway):
    write_variants(gateway.config_path, {"ab": {"arms": {"a": 100, "b": 0}}})
    try:
        reload = httpx.post(gateway.url + "/v1/admin/reload", headers=gateway.headers, timeout=10)
        assert reload.status_code == 200, reload.text

        def both_workers_route_all_to_a() -> bool:
            before = requests_by_process(gateway)
            with ThreadPoolExecutor(16) as pool:
                served = {
                    response.headers["x-moe-variant"]
                    for response in pool.map(lambda s: chat(gateway, "ab", s), SESSIONS * 4)
                }
            after = requests_by_process(gateway)
            both = all(after.get(w.pid, 0) > before.get(w.pid, 0) for w in workers(gateway))
            return both and served == {"a"}

        assert wait_for(both_workers_route_all_to_a, timeout=30), gateway.log_tail()
    finally:
        write_variants(gateway.config_path, EXPERIMENT)


def test_ps_names_each_worker(gateway):
    pytest.importorskip("setproctitle")

    def titles():  # setproctitle pads the rewritten command line with spaces
        named = (" ".join(w.cmdline()).strip() for w in workers(gateway))
        return sorted(title for title in named if title.startswith("moeprune"))

    port = gateway.url.rstrip("/").rsplit(":", 1)[1]
    expected = [f"moeprune worker 0 (port {port})", f"moeprune worker 1 (port {port})"]
    assert wait_for(lambda: titles() == expected, timeout=10), titles()


def test_every_worker_requires_the_key(gateway):
    before = requests_by_process(gateway)
    with ThreadPoolExecutor(8) as pool:
        statuses = list(
            pool.map(
                lambda _: (
                    httpx.post(
                        gateway.url + "/v1/chat/completions", json={"model": "a", **CHAT}, timeout=30
                    ).status_code
                ),
                range(40),
            )
        )
    # 40 new connections spread over both workers' sockets (test_listener.py): each refused them.
    assert statuses == [401] * 40
    assert sum(requests_by_process(gateway).values()) == sum(before.values())  # refused before any answer


def test_a_killed_worker_is_replaced(gateway):
    victim = workers(gateway)[0]
    victim.kill()
    victim.wait(timeout=10)
    replaced = wait_for(
        lambda: len(workers(gateway)) == 2 and victim.pid not in [w.pid for w in workers(gateway)], timeout=30
    )
    assert replaced, gateway.log_tail()
    assert '"worker exited; restarting it"' in gateway.log_tail(20000)
    assert wait_for(lambda: all(chat(gateway).status_code == 200 for _ in range(10)), timeout=30)
    assert gateway.proc.poll() is None


def _engine_and_worker_pids(running) -> list[int]:
    return [process.pid for process in psutil.Process(running.proc.pid).children(recursive=True)]


def _gone(pids: list[int], timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    while (
        left := [pid for pid in pids if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
    ) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


@pytest.fixture
def fresh(tmp_path):
    running = start(write_variants(tmp_path / "variants.yaml"), tmp_path, "--workers", "2")
    try:
        running.wait_ready(timeout=90)
        assert wait_for(lambda: len(workers(running)) == 2, timeout=30), running.log_tail()
        assert chat(running).status_code == 200
        yield running
    finally:
        running.shutdown(timeout=60)


def test_sigterm_stops_the_workers_then_the_engines(fresh):
    pids = _engine_and_worker_pids(fresh)
    assert len(pids) >= 4  # two workers, and each engine with its keeper
    assert fresh.shutdown(timeout=60) == 0
    assert not _gone(pids, timeout=10)
    assert '"gateway stopped; every worker and engine stopped"' in fresh.log_tail(20000)


def test_a_sigkilled_serve_process_leaves_no_worker_serving(fresh):
    pids = _engine_and_worker_pids(fresh)
    fresh.proc.send_signal(signal.SIGKILL)
    fresh.proc.wait(timeout=10)
    # Workers get SIGTERM from the kernel (parent death) and stop within their grace; engines via their keepers.
    assert not _gone(pids, timeout=30), "processes outlived the SIGKILLed serve process"
    with pytest.raises(httpx.TransportError):
        httpx.get(fresh.url + "/health", timeout=3)


def test_workers_that_keep_dying_stop_the_gateway(fresh):
    fresh.config_path.write_text("variants: [this is no longer a variants file\n")  # replacements cannot start
    workers(fresh)[0].kill()
    assert fresh.proc.wait(timeout=90) == 1  # 5 replacements (0.5 + 1 + 2 + 4 + 8 s of backoff), then it stops
    log = fresh.log_tail(50000)
    assert '"gateway stopping: its workers keep exiting"' in log and "5 worker restarts within 60s" in log
    assert not _gone(_engine_and_worker_pids_left(fresh), timeout=10)


def _engine_and_worker_pids_left(running) -> list[int]:
    with contextlib.suppress(psutil.Error):
        return _engine_and_worker_pids(running)
    return []


def test_one_worker_is_the_single_process_gateway(tmp_path):
    running = start(write_variants(tmp_path / "variants.yaml"), tmp_path, "--workers", "1")
    try:
        running.wait_ready(timeout=90)
        assert chat(running).status_code == 200
        assert workers(running) == []  # no worker process: this process serves
        assert not list((tmp_path / "engines").glob("workers-*"))  # and no shared metrics directory
        text = httpx.get(running.url + "/metrics", timeout=10).text
        assert metric_total(text, "moeprune_requests_total") == 1
    finally:
        assert running.shutdown(timeout=60) in (0, -signal.SIGTERM)


def test_a_worker_count_below_one_is_refused(tmp_path):
    running = start(write_variants(tmp_path / "variants.yaml"), tmp_path, "--workers", "0")
    assert running.proc.wait(timeout=60) == 2
    assert "--workers 0: give 1 (one process) or more worker processes" in running.log_tail()
