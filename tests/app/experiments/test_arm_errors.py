"""An experiment arm's error rate counts the arm's failures (5xx) only; the client's own faults are counted apart."""

from __future__ import annotations

import pytest

from tests.app.experiment_gateway import complete, experiment_gateway
from tests.support.fake_engine import ENGINE_500, EngineConfig, FakeEngine, Rule, says
from tests.support.loopback import served

pytestmark = pytest.mark.timeout(120)
FAILING = EngineConfig(rules=[Rule(says("fail"), ENGINE_500)])  # "fail" in the prompt: the engine answers 500


async def test_a_malformed_request_does_not_raise_the_arms_error_rate_an_upstream_500_does(tmp_path):
    async with (
        served(FakeEngine(FAILING)) as engine_url,
        experiment_gateway(tmp_path, {"a": engine_url}, {"arms": {"a": 1}}) as (client, app),
    ):
        await complete(client, prompt="hello")
        # Refused by the gateway after the arm was assigned (echo needs an evaluation variant): the client's fault.
        refused = await client.post("/v1/completions", json={"model": "ab", "prompt": "hi", "echo": True})
        assert refused.status_code == 400 and refused.headers["x-moe-variant"] == "a"
        arm = (await client.get("/v1/experiments/ab")).json()["arms"]["a"]
        assert (arm["requests"], arm["errors"], arm["error_rate"], arm["client_errors"]) == (2, 0, 0.0, 1)

        failed = await client.post("/v1/completions", json={"model": "ab", "prompt": "fail", "max_tokens": 2})
        assert failed.status_code == 502  # the engine answered 500: the arm failed
        arm = (await client.get("/v1/experiments/ab")).json()["arms"]["a"]
        assert (arm["requests"], arm["errors"], arm["client_errors"]) == (3, 1, 1)
        assert arm["error_rate"] == pytest.approx(1 / 3)

        # The same rate from Prometheus: 5xx over all requests of the arm (docs/gateway.md, "Metrics").
        metrics = (await client.get("/metrics")).text
        lines = [
            line
            for line in metrics.splitlines()
            if line.startswith("moeprune_requests_total{") and 'experiment="ab"' in line
        ]
        by_status = {line.split('status="')[1].split('"')[0]: float(line.rsplit(" ", 1)[1]) for line in lines}
        assert by_status == {"200": 1.0, "400": 1.0, "502": 1.0}
        server = sum(count for status, count in by_status.items() if status.startswith("5"))
        assert server / sum(by_status.values()) == pytest.approx(arm["error_rate"])
