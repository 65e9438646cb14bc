"""Live re-certification through a real in-process gateway: feedback for any served completion, the
fallback it trips per (variant, domain), the gauges that show it, and `moeprune recertify` clearing it.

The gateway records every completion it serves (`record_served`, docs/reliability.md); here each
test then records the same id again with the domain, `p_wrong` and flag its scenario needs (the
later record of an id is the one rated), since the stub engines' answers would all land in one
domain with one verdict. The gateway's own verdicts are tested in test_certified_flags.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3

import httpx
import pytest
import yaml

from app.api.auth import key_id
from app.config.settings import Settings
from app.main import create_app
from app.reliability.live import LiveCertificates, ServedAnswer
from app.reliability.live_bound import labels_to_recertify
from moeprune.cli import main as moeprune
from tests.support.fake_engine import FakeEngine
from tests.support.loopback import serve_app, served, wait_until

KEY, OTHER_KEY = "live-key-1", "live-key-2"
AUTH, OTHER_AUTH = {"Authorization": f"Bearer {KEY}"}, {"Authorization": f"Bearer {OTHER_KEY}"}
THRESHOLD = 0.2  # the pruned variant's certified p_wrong threshold in_domain (its card below)
# The cards' p_wrong model (RiskModel.as_dict): sigmoid(-3 - 2 * mean_logprob), about 0.05 for the stub
# engines' answers (logprob -0.05): serve()'s default, below both domains' thresholds.
RISK_MODEL = {
    "features": ["mean_logprob"],
    "means": [0.0],
    "scales": [1.0],
    "coef": [-2.0],
    "intercept": -3.0,
    "iso_x": [],
    "iso_y": [],
}


def certificate(status: str, threshold: float | None) -> dict:
    return {
        "alpha": 0.05,
        "delta": 0.05,
        "status": status,
        "threshold": threshold,
        "coverage": 0.8,
        "n_unflagged": 320,
        "errors_unflagged": 6,
        "realised_error": 0.019,
        "error_upper": 0.04,
        "n_calibration": 400,
        "n_fit": 400,
        "tested": 3,
    }


CARD = {
    "schema_version": 1,
    "variant": "pruned",
    "model": "pruned",
    "tasks": {},
    "reliability": {
        "alpha": 0.05,
        "delta": 0.05,
        "weights_sha256": None,
        "labels_sha256": "0" * 64,
        "base_check": False,
        "domains": {
            "in_domain": {
                "n": 400,
                "n_wrong": 30,
                "model": RISK_MODEL,
                "certificate": certificate("certified", THRESHOLD),
            },
            "cross_domain": {
                "n": 400,
                "n_wrong": 90,
                "model": RISK_MODEL,
                "certificate": certificate("certified", 0.1),
            },
        },
    },
}


@pytest.fixture
def engines():
    with serve_app(FakeEngine()) as base, serve_app(FakeEngine()) as pruned:
        yield {"base": base, "pruned": pruned}


@contextlib.asynccontextmanager
async def gateway(tmp_path, engines, **settings):
    """A gateway without experiments (plain variants), the pruned one with a certified card."""
    (tmp_path / "card.json").write_text(json.dumps(CARD))
    variants = {
        "base": {"url": engines["base"]},
        "pruned": {"url": engines["pruned"], "report_card": str(tmp_path / "card.json")},
    }
    (tmp_path / "variants.yaml").write_text(yaml.safe_dump({"variants": variants}))
    app = create_app(
        Settings(
            config_path=tmp_path / "variants.yaml",
            health_interval_s=0.2,
            state_dir=tmp_path / "state",
            api_keys=f"{KEY},{OTHER_KEY}",
            **settings,
        )
    )
    async with served(app) as url:
        state = app.state.gateway
        if not await wait_until(lambda: all(backend.up for backend in state.backends.values()), timeout=20):
            raise RuntimeError("the stub engines never came up")
        async with httpx.AsyncClient(base_url=url, headers=AUTH, timeout=30) as client:
            yield client, state.live


async def serve(
    client: httpx.AsyncClient,
    live: LiveCertificates,
    variant: str,
    domain: str,
    p_wrong: float = 0.05,
    flagged: bool = False,
    key: str = KEY,
) -> str:
    """A real completion from the gateway, recorded the way the serving path records it."""
    response = await client.post(
        "/v1/completions",
        json={"model": variant, "prompt": "hi", "max_tokens": 2},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert response.status_code == 200, response.text
    completion_id = response.json()["id"]
    live.record_served(
        ServedAnswer(
            completion_id, variant, domain, p_wrong, flagged, abstained=False, card_sha256="c" * 64, key_id=key_id(key)
        )
    )
    return completion_id


def assert_openai_error(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["code"] == code
    return error


def gauge(metrics: str, name: str, variant: str, domain: str) -> float:
    prefix = f'moeprune_{name}{{domain="{domain}",variant="{variant}"}} '
    return float(next(line for line in metrics.splitlines() if line.startswith(prefix)).split()[-1])


async def test_feedback_for_a_plain_completion_is_joined_once_per_label_and_only_for_its_key(tmp_path, engines):
    async with gateway(tmp_path, engines) as (client, live):
        completion_id = await serve(client, live, "base", "all")
        first = await client.post("/v1/feedback", json={"id": completion_id, "label": "bad", "tags": ["dosing"]})
        assert first.status_code == 200, first.text
        assert first.json() == {
            "object": "feedback",
            "id": completion_id,
            "variant": "base",
            "domain": "all",
            "recorded": True,
            "duplicate": False,
            "label_status": "new",
        }
        again = await client.post("/v1/feedback", json={"id": completion_id, "score": 0.1})  # still wrong
        assert again.json()["duplicate"] is True and again.json()["label_status"] == "same"
        assert (live.pairs[("base", "all")].labelled, live.pairs[("base", "all")].wrong) == (1, 1)
        revised = await client.post("/v1/feedback", json={"id": completion_id, "label": "good"})
        assert revised.json()["label_status"] == "revised"  # the latest label wins
        assert (live.pairs[("base", "all")].labelled, live.pairs[("base", "all")].wrong) == (1, 0)

        error = assert_openai_error(
            await client.post("/v1/feedback", json={"id": "cmpl-never-served", "label": "good"}),
            404,
            "completion_not_found",
        )
        assert error["param"] == "id" and "another API key" in error["message"]
        # Another key cannot rate it, nor learn that it exists: the same 404 as an unknown id.
        assert_openai_error(
            await client.post("/v1/feedback", json={"id": completion_id, "label": "bad"}, headers=OTHER_AUTH),
            404,
            "completion_not_found",
        )
        assert live.pairs[("base", "all")].wrong == 0


async def test_bad_feedback_on_unflagged_answers_trips_only_that_pair_and_recertify_clears_it(
    tmp_path, engines, caplog, monkeypatch
):
    async with gateway(tmp_path, engines) as (client, live):
        # Both domains of the pruned variant and the base serve unflagged answers; only pruned in_domain goes wrong.
        ids = {
            pair: [await serve(client, live, *pair) for _ in range(12)]
            for pair in (("pruned", "in_domain"), ("pruned", "cross_domain"), ("base", "all"))
        }
        # Flagged and abstaining answers are outside the certificate's population: bad labels on them do nothing.
        flagged = await serve(client, live, "pruned", "in_domain", p_wrong=0.9, flagged=True)
        assert (await client.post("/v1/feedback", json={"id": flagged, "label": "bad"})).status_code == 200
        assert not live.fallback_active("pruned", "in_domain") and live.pairs[("pruned", "in_domain")].labelled == 0

        for completion_id in ids[("pruned", "cross_domain")] + ids[("base", "all")]:
            assert (await client.post("/v1/feedback", json={"id": completion_id, "label": "good"})).status_code == 200
        with caplog.at_level(logging.WARNING, logger="moeprune.reliability"):
            for completion_id in ids[("pruned", "in_domain")][:4]:  # first good, then flipped to bad
                await client.post("/v1/feedback", json={"id": completion_id, "label": "good"})
                await client.post("/v1/feedback", json={"id": completion_id, "label": "bad"})
        assert live.fallback_active("pruned", "in_domain")
        assert not live.fallback_active("pruned", "cross_domain") and not live.fallback_active("base", "all")
        trip = next(record for record in caplog.records if getattr(record, "event_kind", None) == "fallback")
        assert (trip.variant, trip.domain, trip.wrong) == ("pruned", "in_domain", trip.labelled)

        metrics = (await client.get("/metrics")).text
        assert gauge(metrics, "live_fallback_active", "pruned", "in_domain") == 1
        assert gauge(metrics, "live_fallback_active", "pruned", "cross_domain") == 0
        assert gauge(metrics, "live_fallback_active", "base", "all") == 0
        assert gauge(metrics, "live_realised_error", "pruned", "cross_domain") == 0
        assert gauge(metrics, "live_labelled_answers", "pruned", "cross_domain") == 12
        assert gauge(metrics, "live_error_upper_bound", "pruned", "cross_domain") == pytest.approx(0.221, abs=1e-3)
        assert gauge(metrics, "live_certificate_alpha", "pruned", "in_domain") == 0.05
        assert 'moeprune_live_fallback_active{domain="in_domain",variant="pruned"} 1.0' in metrics

        # The window restarted at the trip: the labels that tripped it cannot clear it.
        monkeypatch.setenv("MOEPRUNE_API_KEY", KEY)
        cli = ["recertify", "--gateway", str(client.base_url), "--variant", "pruned"]
        assert await asyncio.to_thread(moeprune, cli) == 1
        assert live.fallback_active("pruned", "in_domain")
        # While the fallback flags everything, answers the certificate alone would pass still gather labels.
        needed = labels_to_recertify(0.05, 0.05)
        for _ in range(needed):
            completion_id = await serve(client, live, "pruned", "in_domain", p_wrong=THRESHOLD / 2, flagged=True)
            await client.post("/v1/feedback", json={"id": completion_id, "label": "good"})
        above = await serve(client, live, "pruned", "in_domain", p_wrong=0.9, flagged=True)  # not in the population
        await client.post("/v1/feedback", json={"id": above, "label": "bad"})
        with caplog.at_level(logging.WARNING, logger="moeprune.reliability"):
            assert await asyncio.to_thread(moeprune, cli) == 0
        assert not live.fallback_active("pruned", "in_domain")
        cleared = next(record for record in caplog.records if getattr(record, "event_kind", None) == "recertified")
        assert (cleared.labelled, cleared.wrong, cleared.forced) == (needed, 0, False)
        metrics = (await client.get("/metrics")).text
        assert gauge(metrics, "live_fallback_active", "pruned", "in_domain") == 0
        assert gauge(metrics, "live_labelled_answers", "pruned", "in_domain") == 0  # a fresh window


async def test_force_clears_and_unknown_pairs_are_a_404(tmp_path, engines):
    async with gateway(tmp_path, engines) as (client, live):
        for _ in range(3):
            await client.post("/v1/feedback", json={"id": await serve(client, live, "base", "all"), "label": "bad"})
        assert live.fallback_active("base", "all")
        kept = (await client.post("/v1/admin/recertify", json={})).json()
        assert [pair["cleared"] for pair in kept["pairs"]] == [False] and kept["fallbacks"][0]["variant"] == "base"
        forced = (await client.post("/v1/admin/recertify", json={"variant": "base", "force": True})).json()
        assert forced["pairs"][0] | {"cleared": True, "forced": True} == forced["pairs"][0]
        assert not live.fallback_active("base", "all") and forced["fallbacks"] == []
        assert_openai_error(await client.post("/v1/admin/recertify", json={"variant": "nope"}), 404, "pair_not_found")
        assert_openai_error(await client.post("/v1/admin/recertify", json={"force": "yes"}), 400, "invalid_recertify")


async def test_a_flood_of_contradictory_feedback_stays_bounded_and_never_fails(tmp_path, engines):
    async with gateway(tmp_path, engines, live_max_answers=40) as (client, live):
        ids = [await serve(client, live, "base", "all") for _ in range(60)]
        assert len(live.served) == 40  # the oldest 20 were forgotten
        assert_openai_error(
            await client.post("/v1/feedback", json={"id": ids[0], "label": "good"}), 404, "completion_not_found"
        )

        async def flip(completion_id: str, times: int) -> list[int]:
            statuses = []
            for index in range(times):
                response = await client.post(
                    "/v1/feedback", json={"id": completion_id, "label": "bad" if index % 2 else "good"}
                )
                statuses.append(response.status_code)
            return statuses

        statuses = [status for batch in await asyncio.gather(*(flip(i, 15) for i in ids[20:])) for status in batch]
        statuses += [
            (await client.post("/v1/feedback", json={"id": f"cmpl-made-up-{i}", "score": 0.0})).status_code
            for i in range(200)
        ]
        assert set(statuses) <= {200, 404} and statuses.count(200) == 40 * 15
        pair = live.pairs[("base", "all")]
        assert pair.labelled <= 40 and 0 <= pair.wrong <= pair.labelled
        assert (await client.get("/metrics")).status_code == 200


def held_rows(tmp_path) -> list[tuple]:
    with contextlib.closing(sqlite3.connect(tmp_path / "state" / "experiments.sqlite3")) as connection:
        return connection.execute("SELECT variant, domain FROM live_fallbacks").fetchall()


async def test_a_fallback_survives_a_restart_until_recertified(tmp_path, engines):
    async with gateway(tmp_path, engines, experiment_flush_interval_s=0.1) as (client, live):
        for _ in range(3):
            await client.post(
                "/v1/feedback", json={"id": await serve(client, live, "pruned", "in_domain"), "label": "bad"}
            )
        assert live.fallback_active("pruned", "in_domain")
        assert await wait_until(lambda: held_rows(tmp_path) == [("pruned", "in_domain")], timeout=10)
    async with gateway(tmp_path, engines, experiment_flush_interval_s=0.1) as (client, live):
        # Held from the database before the first request, though this gateway saw no feedback.
        assert live.fallback_active("pruned", "in_domain") and not live.fallback_active("pruned", "cross_domain")
        assert (await client.get("/v1/admin/live")).json()["data"][1] | {"fallback": True} == (
            await client.get("/v1/admin/live")
        ).json()["data"][1]
        forced = (await client.post("/v1/admin/recertify", json={"force": True})).json()
        assert [pair["cleared"] for pair in forced["pairs"]] == [True]
        assert await wait_until(lambda: held_rows(tmp_path) == [], timeout=10)
    async with gateway(tmp_path, engines) as (client, live):
        assert not live.fallback_active("pruned", "in_domain")
