"""Two gateways sharing one real PostgreSQL server: a fallback one of them trips is held by the other,
and a re-certification on either releases it on both (app/reliability/live_sync.py)."""

from __future__ import annotations

import pytest

from tests.app.postgres_server import PostgresServer, why_unavailable
from tests.app.reliability.test_live_recertification import engines, gateway, serve  # noqa: F401 - the fixture too
from tests.support.loopback import wait_until

pytest.importorskip("psycopg", reason="the PostgreSQL driver: pip install 'psycopg[binary]' (requirements/runtime.txt)")
if why_unavailable():
    pytest.skip(why_unavailable(), allow_module_level=True)


@pytest.fixture
def postgres():
    server = PostgresServer().init()
    try:
        yield server
    finally:
        server.destroy()


async def test_replicas_share_fallbacks_through_postgres(tmp_path, engines, postgres):  # noqa: F811
    shared = {"experiment_dsn": postgres.dsn, "experiment_flush_interval_s": 0.1}
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    async with (
        gateway(tmp_path / "a", engines, **shared) as (client_a, live_a),
        gateway(tmp_path / "b", engines, **shared) as (client_b, live_b),
    ):
        for _ in range(3):
            completion_id = await serve(client_a, live_a, "pruned", "cross_domain")
            assert (await client_a.post("/v1/feedback", json={"id": completion_id, "label": "bad"})).status_code == 200
            # Replica b never served it: its feedback answers 404 (served answers stay in each replica's memory).
            assert (await client_b.post("/v1/feedback", json={"id": completion_id, "label": "bad"})).status_code == 404
        assert live_a.fallback_active("pruned", "cross_domain")
        assert await wait_until(lambda: live_b.fallback_active("pruned", "cross_domain"), timeout=10)
        assert not live_b.fallback_active("pruned", "in_domain")

        cleared = (await client_b.post("/v1/admin/recertify", json={"variant": "pruned", "force": True})).json()
        assert [pair["cleared"] for pair in cleared["pairs"]] == [True]
        assert await wait_until(lambda: not live_a.fallback_active("pruned", "cross_domain"), timeout=10)
