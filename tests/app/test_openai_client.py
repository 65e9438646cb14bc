"""The official `openai` client, sync and streaming, against the gateway's two managed variants."""

from __future__ import annotations

import httpx
import openai
import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def client(gateway):
    return openai.OpenAI(base_url=gateway.url + "/v1", api_key=gateway.api_key, max_retries=0, timeout=120)


@pytest.mark.parametrize("variant", ["base", "pruned"])
def test_chat_completion_returns_text_reliability_and_variant_header(client, variant):
    raw = client.chat.completions.with_raw_response.create(
        model=variant,
        messages=[{"role": "user", "content": "Which organ does hepatitis affect?"}],
        max_tokens=8,
        temperature=0,
    )
    completion = raw.parse()
    assert raw.headers["x-moe-variant"] == variant
    assert "x-moe-experiment" not in raw.headers
    assert completion.choices[0].message.content
    assert completion.model == variant
    reliability = completion.model_extra["reliability"]
    assert set(reliability) == {
        "flags",
        "abstained",
        "p_wrong",
        "above_risk",
        "domain",
        "certificate",
        "signals",
        "thresholds_source",
    }
    assert reliability["signals"]["mean_logprob"] < 0
    assert raw.headers["x-moe-reliability-flags"] == (",".join(reliability["flags"]) or "none")
    # The gateway asked for logprobs; the client did not, so it gets none.
    assert completion.choices[0].logprobs is None


def test_report_card_thresholds_apply_to_their_variant_only(client):
    def reliability(model):
        completion = client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "Metformin treats"}], max_tokens=8, temperature=0
        )
        return completion.model_extra["reliability"]

    base, pruned = reliability("base"), reliability("pruned")
    assert base["thresholds_source"] == "defaults"
    assert pruned["thresholds_source"] == "report_card"
    # A random tiny model's top-5 entropy (~1.6 nats) exceeds the default 1.5, never the card's 10.
    assert base["signals"]["mean_entropy"] > 1.5 and "high_entropy" in base["flags"]
    assert "high_entropy" not in pruned["flags"]
    # The pruned variant has base_check on: its answer was scored under the base variant.
    assert pruned["signals"]["base_mean_logprob"] < 0


def test_streaming_chat_ends_with_reliability_and_done(gateway, client):
    stream = client.chat.completions.create(
        model="pruned", messages=[{"role": "user", "content": "Paris is"}], max_tokens=6, temperature=0, stream=True
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text
    assert chunks[-1].choices == []
    assert chunks[-1].model_extra["reliability"]["thresholds_source"] == "report_card"
    with httpx.stream(
        "POST",
        gateway.url + "/v1/chat/completions",
        headers=gateway.headers,
        json={"model": "ab", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3, "stream": True},
        timeout=60,
    ) as response:
        lines = [line for line in response.iter_lines() if line]
        assert response.headers["x-moe-experiment"] == "ab"
        assert response.headers["x-moe-variant"] in ("base", "pruned")
    assert lines[-1] == "data: [DONE]"


def test_streaming_completion_keeps_requested_logprobs_and_usage(client):
    stream = client.completions.create(
        model="base",
        prompt="The liver",
        max_tokens=5,
        temperature=0,
        stream=True,
        logprobs=2,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    content = [c for c in chunks if c.choices]
    assert all(len(top) <= 2 for c in content for top in c.choices[0].logprobs.top_logprobs)
    assert chunks[-1].usage.completion_tokens == 5
    assert "reliability" in chunks[-1].model_extra


def test_experiment_assigns_sticky_arm_and_names_it(gateway, client):
    arms = set()
    for _ in range(3):
        raw = client.chat.completions.with_raw_response.create(
            model="ab",
            messages=[{"role": "user", "content": "hi"}],
            max_tokens=2,
            extra_headers={"x-session-id": "patient-portal-42"},
        )
        assert raw.headers["x-moe-experiment"] == "ab"
        arms.add(raw.headers["x-moe-variant"])
        assert raw.parse().model == raw.headers["x-moe-variant"]
    assert len(arms) == 1


def test_self_consistency_reports_agreement(client):
    completion = client.chat.completions.create(
        model="consistency", messages=[{"role": "user", "content": "hi"}], max_tokens=4, temperature=0
    )
    reliability = completion.model_extra["reliability"]
    assert 0 <= reliability["signals"]["agreement"] <= 1
    assert ("inconsistent" in reliability["flags"]) == (reliability["signals"]["agreement"] < 0.5)


def test_models_lists_variants_and_experiments(client):
    ids = {model.id for model in client.models.list()}
    assert ids == {"base", "pruned", "remote", "ab", "consistency"}


def test_remote_variant_is_served_through_its_url(client):
    raw = client.completions.with_raw_response.create(model="remote", prompt="The liver", max_tokens=3)
    assert raw.headers["x-moe-variant"] == "remote"
    completion = raw.parse()
    assert completion.model == "remote" and completion.choices[0].text is not None
    assert completion.model_extra["reliability"]["thresholds_source"] == "defaults"
