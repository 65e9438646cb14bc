"""Bad requests get their documented status and OpenAI's error shape, never a 5xx."""

from __future__ import annotations

import asyncio

import httpx
import pytest

pytestmark = pytest.mark.slow

CHAT = "/v1/chat/completions"


def assert_openai_error(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    return error


def post(gateway, body=None, content=None, headers=None, path=CHAT):
    return httpx.post(
        gateway.url + path,
        json=body,
        content=content,
        timeout=60,
        headers={**gateway.headers, "content-type": "application/json", **(headers or {})},
    )


def test_malformed_json_is_400(gateway):
    assert_openai_error(post(gateway, content=b'{"model": "base", "messages": ['), 400)


def test_schema_violation_is_400_naming_the_field(gateway):
    error = assert_openai_error(post(gateway, {"model": "base", "messages": [], "temperature": 9}), 400)
    assert error["param"] in ("messages", "temperature")


def test_unknown_model_is_404_listing_the_known_ones(gateway):
    error = assert_openai_error(post(gateway, {"model": "gpt-5", "messages": [{"role": "user", "content": "x"}]}), 404)
    assert "pruned" in error["message"] and error["param"] == "model"


def test_missing_or_wrong_key_is_401(gateway):
    body = {"model": "base", "messages": [{"role": "user", "content": "x"}]}
    response = httpx.post(gateway.url + CHAT, json=body, timeout=30)
    assert_openai_error(response, 401)
    assert_openai_error(post(gateway, body, headers={"Authorization": "Bearer wrong"}), 401)
    assert_openai_error(httpx.get(gateway.url + "/v1/models", timeout=30), 401)
    # /health and /metrics are open by default (configurable).
    assert httpx.get(gateway.url + "/health", timeout=30).status_code == 200


def test_oversize_request_is_413(gateway):
    body = {"model": "base", "messages": [{"role": "user", "content": "x" * 70_000}]}
    assert_openai_error(post(gateway, body), 413)


def test_max_tokens_above_the_limit_is_400(gateway):
    body = {"model": "base", "messages": [{"role": "user", "content": "x"}], "max_tokens": 10_000}
    error = assert_openai_error(post(gateway, body), 400)
    assert error["param"] == "max_tokens"


def test_engine_rejections_pass_through_as_4xx(gateway):
    # A prompt longer than the engine's context (512 tokens) is the engine's 400, not a gateway 5xx.
    body = {"model": "base", "prompt": "liver " * 2000, "max_tokens": 4}
    response = post(gateway, body, path="/v1/completions")
    assert 400 <= response.status_code < 500
    assert_openai_error(response, response.status_code)


def test_unknown_experiment_is_404(gateway):
    assert_openai_error(httpx.get(gateway.url + "/v1/experiments/nope", headers=gateway.headers, timeout=30), 404)


async def test_full_queue_is_429_with_retry_after(gateway):
    # `base` admits 6 requests at once; 16 concurrent long generations overflow it.
    body = {"model": "base", "messages": [{"role": "user", "content": "x"}], "max_tokens": 200, "ignore_eos": True}
    async with httpx.AsyncClient(headers=gateway.headers, timeout=120) as client:
        responses = await asyncio.gather(*(client.post(gateway.url + CHAT, json=body) for _ in range(16)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(200) >= 6 and 429 in statuses, statuses
    rejected = next(r for r in responses if r.status_code == 429)
    assert_openai_error(rejected, 429)
    assert int(rejected.headers["retry-after"]) >= 1
