"""Guards through a real gateway in front of real vLLM CPU engines (the tiny base and its pruned copy).

Who really answered is checked against the engines themselves: the guarded
answer's token logprobs equal those of the base engine asked directly (greedy),
and the pruned engine's differ (their greedy texts can agree).
"""

from __future__ import annotations

import httpx
import pytest

from pruning.domain_gate_files import build_gate
from tests.app.guarded_gateway import IN_DOMAIN, OUT_OF_DOMAIN, guarded_gateway
from tests.app.in_process_gateway import AccessRecords

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def gate_file(tmp_path_factory):
    from demo.calibration import write_calibration
    from demo.corpus import build_corpus

    work = tmp_path_factory.mktemp("guard")
    calibration = write_calibration(build_corpus(0), work / "calibration.jsonl")
    return build_gate([calibration]).save(work / "domain_gate.json")


@pytest.fixture
def engine_env(gateway, monkeypatch):
    for name, value in gateway.engine_keys.items():
        monkeypatch.setenv(name, value)
    return gateway


def chat(model: str, text: str, **extra) -> dict:
    return {
        "model": model,
        "messages": [{"role": "user", "content": text}],
        "max_tokens": 6,
        "temperature": 0,
        "logprobs": True,
        **extra,
    }


def fingerprint(answer: dict) -> list[tuple[str, float]]:
    """The answer's tokens and their logprobs: which engine produced it."""
    return [(t["token"], round(t["logprob"], 3)) for t in answer["choices"][0]["logprobs"]["content"]]


async def direct(running, engine: str, text: str) -> list:
    url, key_env = running.engines[engine]
    async with httpx.AsyncClient(timeout=60) as client:
        response = await client.post(
            url + "/v1/chat/completions",
            json=chat(engine, text),
            headers={"Authorization": f"Bearer {running.engine_keys[key_env]}"},
        )
    response.raise_for_status()
    return fingerprint(response.json())


def sample(app, name: str, **labels) -> float:
    return app.state.gateway.metrics.registry.get_sample_value(name, labels) or 0.0


async def test_the_gate_sends_out_of_domain_prompts_to_the_base_and_keeps_in_domain_ones(
    engine_env, tmp_path, gate_file
):
    base_answer = await direct(engine_env, "base", OUT_OF_DOMAIN)
    assert base_answer != await direct(engine_env, "pruned", OUT_OF_DOMAIN)  # so the answer tells who answered
    records = AccessRecords()
    async with guarded_gateway(engine_env, tmp_path, gate_file) as (url, app), httpx.AsyncClient(timeout=120) as c:
        with records.attached():
            inside = await c.post(url + "/v1/chat/completions", json=chat("gated", IN_DOMAIN))
            outside = await c.post(url + "/v1/chat/completions", json=chat("gated", OUT_OF_DOMAIN))
            streamed = await c.post(url + "/v1/chat/completions", json=chat("gated", OUT_OF_DOMAIN, stream=True))
        assert inside.status_code == outside.status_code == streamed.status_code == 200
        kept = inside.json()["reliability"]["guard"]
        assert inside.headers["x-moe-variant"] == "gated" and kept["gate"] == "pass" and kept["served_by"] == "gated"
        assert kept["domain_score"] > 0.5
        moved = outside.json()["reliability"]["guard"]
        assert outside.headers["x-moe-variant"] == "base" and outside.json()["model"] == "base"
        assert moved["gate"] == "fallback" and moved["served_by"] == "base" and moved["domain_score"] < 0.5
        assert fingerprint(outside.json()) == base_answer
        assert outside.headers["x-moe-guard"] == "gate=fallback"
        assert streamed.headers["x-moe-variant"] == "base" and "data: [DONE]" in streamed.text
        assert sample(app, "moeprune_guard_decisions_total", variant="gated", guard="domain_gate", decision="pass") == 1
        assert (
            sample(app, "moeprune_guard_decisions_total", variant="gated", guard="domain_gate", decision="fallback")
            == 2
        )
        assert sample(app, "moeprune_guard_extra_seconds_count", variant="gated", guard="domain_gate") == 3
        assert sample(app, "moeprune_requests_total", variant="base", experiment="", status="200") == 2
    logged = [(r.variant, r.guard["gate"], r.guard["served_by"]) for r in records.records if hasattr(r, "guard")]
    assert logged == [("gated", "pass", "gated"), ("base", "fallback", "base"), ("base", "fallback", "base")]


async def test_a_raised_flag_asks_the_base_again(engine_env, tmp_path, gate_file):
    base_answer = await direct(engine_env, "base", IN_DOMAIN)
    assert base_answer != await direct(engine_env, "pruned", IN_DOMAIN)
    records = AccessRecords()
    async with guarded_gateway(engine_env, tmp_path, gate_file) as (url, app), httpx.AsyncClient(timeout=120) as c:
        with records.attached():
            answer = await c.post(url + "/v1/chat/completions", json=chat("cascaded", IN_DOMAIN))
            streamed = await c.post(url + "/v1/chat/completions", json=chat("cascaded", IN_DOMAIN, stream=True))
        assert answer.status_code == 200, answer.text
        guard = answer.json()["reliability"]["guard"]
        assert guard["cascade"] == "escalated" and guard["served_by"] == "base"
        assert guard["escalated_on"] == ["low_confidence"] and guard["gate"] is None
        assert answer.headers["x-moe-variant"] == "base" and answer.json()["model"] == "base"
        assert fingerprint(answer.json()) == base_answer
        # The final verdict is the base's own (default thresholds), not the forced flag of the pruned card.
        assert answer.headers["x-moe-reliability-flags"] == ",".join(answer.json()["reliability"]["flags"]) or "none"
        assert (
            sample(app, "moeprune_guard_decisions_total", variant="cascaded", guard="cascade", decision="escalated")
            == 1
        )
        assert sample(app, "moeprune_guard_extra_seconds_count", variant="cascaded", guard="cascade") == 1
        # Streams: no cascade (the answer is on its way before its flags are known), said in the header.
        assert streamed.headers["x-moe-variant"] == "cascaded"
        assert streamed.headers["x-moe-guard"] == "cascade=not_streamed"
    logged = [(r.variant, r.guard["cascade"]) for r in records.records if hasattr(r, "guard")]
    assert logged == [("base", "escalated"), ("cascaded", "not_streamed")]


async def test_a_fallback_that_is_down_serves_the_pruned_answer_with_a_flag(engine_env, tmp_path, gate_file):
    pruned_answer = await direct(engine_env, "pruned", OUT_OF_DOMAIN)
    async with guarded_gateway(engine_env, tmp_path, gate_file) as (url, app), httpx.AsyncClient(timeout=120) as c:
        answer = await c.post(url + "/v1/chat/completions", json=chat("orphan", OUT_OF_DOMAIN))
        streamed = await c.post(url + "/v1/chat/completions", json=chat("orphan", OUT_OF_DOMAIN, stream=True))
        assert answer.status_code == 200 and streamed.status_code == 200
        reliability = answer.json()["reliability"]
        assert reliability["guard"]["gate"] == "unavailable" and reliability["guard"]["cascade"] == "unavailable"
        assert reliability["guard"]["served_by"] == "orphan" and "guard_unavailable" in reliability["flags"]
        assert "guard_unavailable" in answer.headers["x-moe-reliability-flags"]
        assert answer.headers["x-moe-variant"] == "orphan"
        assert fingerprint(answer.json()) == pruned_answer
        assert streamed.headers["x-moe-guard"] == "gate=unavailable,cascade=not_streamed"
        assert (
            sample(app, "moeprune_guard_decisions_total", variant="orphan", guard="domain_gate", decision="unavailable")
            == 2
        )
        assert (
            sample(app, "moeprune_guard_decisions_total", variant="orphan", guard="cascade", decision="unavailable")
            == 1
        )
