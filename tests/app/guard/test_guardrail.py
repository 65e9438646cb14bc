"""The guardrail: an arm whose flag rate is made conclusively worse (fault injection) is stopped, its sticky
users move to control (no one else moves), the stop shows in /v1/experiments and /metrics, and a config
reload (the admin endpoint) lifts it while the counts stay."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.app.experiment_gateway import complete, experiment_gateway, write_variants
from tests.support.fake_engine import ANSWER, DEFAULT_ANSWER, FakeEngine, one_token
from tests.support.loopback import serve_app, wait_until

GUARDED = {
    "arms": {"base": 50, "pruned": 50},
    "control": "base",
    "decide": {"flags": {"low_confidence": {"margin": 0.05}}, "alpha": 0.05},
    "guardrail": {"flag": "low_confidence", "stop_if_worse_by": 0.2},
}
SESSIONS = [f"user-{index}" for index in range(60)]


def sample(metrics_text: str, name: str, **labels) -> float | None:
    for family in text_string_to_metric_families(metrics_text):
        for metric in family.samples:
            if metric.name == name and all(metric.labels.get(k) == v for k, v in labels.items()):
                return metric.value
    return None


async def arms_of(client, sessions) -> dict[str, str]:
    return {session: (await complete(client, session)).headers["x-moe-variant"] for session in sessions}


async def test_a_conclusively_worse_arm_is_stopped_and_its_users_go_to_control(tmp_path):
    base, pruned = FakeEngine(), FakeEngine()
    with serve_app(base) as base_url, serve_app(pruned) as pruned_url:
        urls = {"base": base_url, "pruned": pruned_url}
        async with experiment_gateway(tmp_path, urls, GUARDED, experiment_evaluate_interval_s=0.2) as (client, app):
            before = await arms_of(client, SESSIONS)
            on_pruned = {s for s, arm in before.items() if arm == "pruned"}
            assert 10 < len(on_pruned) < 50
            pruned.config.answer = one_token(ANSWER, -3.0)  # fault: every answer now raises low_confidence
            for _ in range(3):
                await arms_of(client, SESSIONS)
            gateway = app.state.gateway
            assert await wait_until(lambda: ("ab", "pruned") in gateway.experiments.stopped, timeout=10)
            after = await arms_of(client, SESSIONS)
            assert {s for s, arm in after.items() if arm == "pruned"} == set()
            assert {s: arm for s, arm in after.items() if s not in on_pruned} == {
                s: arm for s, arm in before.items() if s not in on_pruned
            }  # nobody else moved
            report = (await client.get("/v1/experiments/ab")).json()
            stopped = report["arms"]["pruned"]
            assert stopped["weight"] == 0 and stopped["configured_weight"] == 50
            assert stopped["stopped"].startswith("guardrail: low_confidence")
            assert stopped["decision"]["status"] == "inferior" and stopped["decision"]["metric"] == "low_confidence"
            metrics = (await client.get("/metrics")).text
            assert sample(metrics, "moeprune_guardrail_stops_total", experiment="ab", variant="pruned") == 1
            assert sample(metrics, "moeprune_experiment_arm_stopped", experiment="ab", variant="pruned") == 1
            assert (
                sample(
                    metrics, "moeprune_experiment_verdict", experiment="ab", variant="pruned", metric="low_confidence"
                )
                == -1
            )
            requests_before_reload = report["arms"]["pruned"]["requests"]

            # The operator fixes the engine and relaxes the guardrail; a reload lifts the stop, counts stay.
            pruned.config.answer = DEFAULT_ANSWER  # logprob -0.05
            relaxed = {**GUARDED, "guardrail": {"flag": "low_confidence", "stop_if_worse_by": 0.99}}
            write_variants(tmp_path / "variants.yaml", urls, relaxed)
            reloaded = await client.post("/v1/admin/reload")
            assert reloaded.status_code == 200, reloaded.text
            assert reloaded.json()["stops_cleared"] == 1
            again = await arms_of(client, sorted(on_pruned))
            assert set(again.values()) == {"pruned"}
            report = (await client.get("/v1/experiments/ab")).json()
            assert report["arms"]["pruned"]["stopped"] is None
            assert report["arms"]["pruned"]["requests"] == requests_before_reload + len(on_pruned)
            assert (
                sample(
                    (await client.get("/metrics")).text,
                    "moeprune_experiment_arm_stopped",
                    experiment="ab",
                    variant="pruned",
                )
                == 0
            )


async def test_a_reload_that_changes_the_variants_is_refused_and_weights_can_change(tmp_path):
    with serve_app(FakeEngine()) as base_url, serve_app(FakeEngine()) as pruned_url:
        urls = {"base": base_url, "pruned": pruned_url}
        async with experiment_gateway(tmp_path, urls, GUARDED) as (client, app):
            await complete(client, "someone")
            write_variants(tmp_path / "variants.yaml", {"base": base_url}, {"arms": {"base": 1}})
            refused = await client.post("/v1/admin/reload")
            assert refused.status_code == 400 and "restart" in refused.json()["error"]["message"]
            write_variants(tmp_path / "variants.yaml", urls, {**GUARDED, "arms": {"base": 0, "pruned": 100}})
            assert (await client.post("/v1/admin/reload")).status_code == 200
            assert set((await arms_of(client, SESSIONS[:10])).values()) == {"pruned"}
            report = (await client.get("/v1/experiments/ab")).json()
            assert sum(arm["requests"] for arm in report["arms"].values()) == 11


@pytest.mark.parametrize(
    "experiment, field",
    [
        ({"arms": {"base": 1}, "control": "nope"}, "control"),
        ({"arms": {"base": 1}, "decide": {"outcome": {"margin": 0.1}}}, "decide"),
        (
            {"arms": {"base": 1}, "control": "base", "guardrail": {"flag": "low_confidense", "stop_if_worse_by": 0.1}},
            "low_confidense",
        ),
        ({"arms": {"base": 1}, "control": "base", "decide": {"outcome": {"margin": 1.5}}}, "margin"),
    ],
)
def test_decision_settings_are_validated(experiment, field):
    from app.config.variants import parse_config
    from moeprune.errors import UserError

    with pytest.raises(UserError, match=field):
        parse_config({"variants": {"base": {"url": "http://127.0.0.1:1"}}, "experiments": {"ab": experiment}})
