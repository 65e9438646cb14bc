"""Two gateway processes sharing one real PostgreSQL server (started here on loopback): the same statistics
from both, the same arm for a sticky key from both; and the database stopped mid-run: completions keep
succeeding, dropped ids are counted, and the counts catch up when it is back."""

from __future__ import annotations

import signal
import threading
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.app.experiment_gateway import write_variants
from tests.app.gateway_process import start_gateway
from tests.app.postgres_server import PostgresServer, why_unavailable
from tests.support.fake_engine import FakeEngine
from tests.support.loopback import serve_app

pytest.importorskip("psycopg", reason="the PostgreSQL driver: pip install 'psycopg[binary]' (requirements/runtime.txt)")
if why_unavailable():
    pytest.skip(why_unavailable(), allow_module_level=True)

EXPERIMENT = {"arms": {"base": 50, "pruned": 50}, "control": "base", "decide": {"outcome": {"margin": 0.1}}}
BUFFER_IDS = 5


@pytest.fixture(scope="module")
def postgres():
    server = PostgresServer().init()
    try:
        yield server
    finally:
        server.destroy()


def metric(gateway, name: str, **labels) -> float | None:
    for family in text_string_to_metric_families(httpx.get(gateway.url + "/metrics", timeout=10).text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return None


def complete(gateway, session: str) -> httpx.Response:
    started = time.monotonic()
    response = httpx.post(
        gateway.url + "/v1/completions",
        headers={**gateway.headers, "x-session-id": session},
        json={"model": "ab", "prompt": "hi", "max_tokens": 2},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    response.elapsed_s = time.monotonic() - started
    return response


def report(gateway) -> httpx.Response:
    return httpx.get(gateway.url + "/v1/experiments/ab", headers=gateway.headers, timeout=30)


def comparable(body: dict) -> dict:
    return {
        arm: {key: stats[key] for key in ("requests", "errors", "flags", "latency_ms", "outcome", "weight")}
        for arm, stats in body["arms"].items()
    }


def requests_in(gateway) -> int | None:
    """The experiment's request total as one replica reports it (None while its store is unavailable)."""
    response = report(gateway)
    return sum(arm["requests"] for arm in response.json()["arms"].values()) if response.status_code == 200 else None


def wait_for(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return predicate()


def test_two_gateways_on_one_postgres_agree_and_survive_the_database_going_away(tmp_path, postgres):
    with serve_app(FakeEngine()) as base_url, serve_app(FakeEngine()) as pruned_url:
        write_variants(tmp_path / "variants.yaml", {"base": base_url, "pruned": pruned_url}, EXPERIMENT)
        env = {
            "MOEPRUNE_EXPERIMENT_DSN": postgres.dsn,
            "MOEPRUNE_HEALTH_INTERVAL_S": "0.2",
            "MOEPRUNE_EXPERIMENT_FLUSH_INTERVAL_S": "0.2",
            "MOEPRUNE_EXPERIMENT_BUFFER_IDS": str(BUFFER_IDS),
        }
        gateways = []
        for name in ("a", "b"):
            (tmp_path / name).mkdir()
            gateways.append(start_gateway(tmp_path / "variants.yaml", tmp_path / name, env=env))
        a, b = gateways
        try:
            for gateway in gateways:
                gateway.wait_ready(timeout=60)
            for index in range(15):
                session = f"user-{index}"
                assert complete(a, session).headers["x-moe-variant"] == complete(b, session).headers["x-moe-variant"]
            time.sleep(1.0)  # > flush interval: each replica's own answers have reached the database
            from_a, from_b = report(a).json(), report(b).json()
            assert comparable(from_a) == comparable(from_b)
            assert sum(arm["requests"] for arm in from_a["arms"].values()) == 30

            postgres.stop()
            during = [complete(a, f"offline-{index}") for index in range(12)]
            assert max(response.elapsed_s for response in during) < 2.0  # nobody waited for the database
            assert wait_for(lambda: metric(a, "moeprune_experiment_store_up") == 0, timeout=10)
            assert metric(a, "moeprune_experiment_store_dropped_total", kind="completion_id") == 12 - BUFFER_IDS
            unavailable = report(a)
            assert unavailable.status_code == 503
            assert unavailable.json()["error"]["code"] == "experiment_store_unavailable"

            postgres.start()
            assert wait_for(lambda: metric(a, "moeprune_experiment_store_up") == 1, timeout=20), a.log_tail()
            # Every count arrives: a flushes what it buffered, and b (which reconnects on its own schedule;
            # until then it answers 503) reads all 42 from the database.
            assert wait_for(lambda: requests_in(b) == 42, timeout=20), (report(b).text, b.log_tail())
            kept, dropped = during[-1].json()["id"], during[0].json()["id"]
            assert (
                httpx.post(
                    a.url + "/v1/feedback", headers=a.headers, json={"id": kept, "label": "good"}, timeout=30
                ).status_code
                == 200
            )
            # The same completion, rated through the other replica: one database, so it is a duplicate there.
            assert (
                httpx.post(
                    b.url + "/v1/feedback", headers=b.headers, json={"id": kept, "label": "good"}, timeout=30
                ).json()["duplicate"]
                is True
            )
            # A dropped id is lost to the experiment, not to the live re-check of the replica that served it:
            # a takes the label for its certificate (no experiment fields); b never saw the answer (404).
            on_dropped = httpx.post(
                a.url + "/v1/feedback", headers=a.headers, json={"id": dropped, "label": "good"}, timeout=30
            )
            assert on_dropped.status_code == 200 and "experiment" not in on_dropped.json(), on_dropped.text
            assert (
                httpx.post(
                    b.url + "/v1/feedback", headers=b.headers, json={"id": dropped, "label": "good"}, timeout=30
                ).status_code
                == 404
            )
            time.sleep(1.0)
            assert comparable(report(a).json()) == comparable(report(b).json())
            assert "dropped" in a.log_tail(50_000) and postgres.dsn not in a.log_tail(50_000)
        finally:
            for gateway in gateways:
                assert gateway.shutdown() in (0, -signal.SIGTERM)


def test_replicas_adding_the_same_counters_in_opposite_orders_do_not_deadlock(postgres):
    """Each replica's buffer holds its counters in the order its own requests met them; two replicas upserting
    the same rows in opposite orders would each hold a row lock the other waits for. PostgreSQL then aborts one
    transaction after `deadlock_timeout` (1 s): that replica marks the store down and, meanwhile, drops
    completion ids beyond its buffer (seen once in CI as one id too many dropped)."""
    from app.experiments.store import SqlStore, StoreUnavailable

    names = [f"counter-{index}" for index in range(40)]
    stores = [SqlStore(dsn=postgres.dsn), SqlStore(dsn=postgres.dsn)]
    stores[0].migrate()
    failures: list[str] = []
    start = threading.Barrier(2)

    def add_all(store: SqlStore, order: list[str]) -> None:
        start.wait()
        for _ in range(25):
            try:
                store.apply({("deadlock", "arm", name): 1.0 for name in order}, [])
            except StoreUnavailable as exc:
                failures.append(str(exc))

    threads = [
        threading.Thread(target=add_all, args=(stores[0], names)),
        threading.Thread(target=add_all, args=(stores[1], names[::-1])),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    for store in stores:
        store.close()
    assert not failures, failures[:3]
    assert stores[0].counters()["deadlock"]["arm"] == dict.fromkeys(names, 50.0)
