"""The response cache (resumable) and the client's retries, with fake transports."""

import asyncio
import json

import httpx
import pytest

from evaluators.cache import ResponseCache, request_key
from evaluators.client import EndpointClient, EndpointError
from moeprune.errors import UserError


def test_cache_resumes_and_skips_a_torn_last_line(tmp_path):
    path = tmp_path / "responses.jsonl"
    cache = ResponseCache(path)
    key = request_key("http://h:1/", "chat/completions", {"model": "m", "messages": []})
    assert key == request_key("http://h:1", "chat/completions", {"messages": [], "model": "m"})
    cache.put(key, {"ok": 1})
    with open(path, "a") as handle:
        handle.write('{"key": "torn", "respo')  # the process died mid-write
    reopened = ResponseCache(path)
    assert reopened.get(key) == {"ok": 1} and reopened.get("torn") is None
    assert reopened.hits == 1 and len(reopened) == 1


def run(coro):
    return asyncio.run(coro)


def test_retries_transient_errors_then_succeeds_and_caches(tmp_path):
    calls = {"n": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        if calls["n"] == 1:
            raise httpx.ConnectError("refused", request=request)
        if calls["n"] == 2:
            return httpx.Response(429, json={"error": "slow down"})
        if calls["n"] == 3:
            return httpx.Response(503, json={"error": "busy"})
        return httpx.Response(200, json={"echo": json.loads(request.content)})

    async def scenario():
        cache = ResponseCache(tmp_path / "c.jsonl")
        async with EndpointClient(
            "http://x", "m", cache=cache, backoff=0.001, transport=httpx.MockTransport(handler)
        ) as client:
            first = await client.post("completions", {"prompt": "hi"})
            second = await client.post("completions", {"prompt": "hi"})
            return first, second, client.sent, cache.hits

    first, second, sent, hits = run(scenario())
    assert first == second == {"echo": {"model": "m", "prompt": "hi"}}
    assert calls["n"] == 4 and sent == 3 and hits == 1  # the second call never reached the server


def test_non_transient_status_fails_without_retrying():
    calls = {"n": 0}

    def handler(request):
        calls["n"] += 1
        return httpx.Response(400, json={"error": "bad request"})

    async def scenario():
        async with EndpointClient("http://x", "m", backoff=0.001, transport=httpx.MockTransport(handler)) as c:
            await c.post("completions", {"prompt": "hi"})

    with pytest.raises(EndpointError, match="HTTP 400"):
        run(scenario())
    assert calls["n"] == 1


def test_check_reports_unreachable_endpoint_and_unknown_model():
    def refuse(request):
        raise httpx.ConnectError("connection refused", request=request)

    async def check(handler, model="m"):
        async with EndpointClient("http://x", model, transport=httpx.MockTransport(handler)) as client:
            return await client.check()

    with pytest.raises(UserError, match="cannot reach endpoint http://x"):
        run(check(refuse))
    models = lambda request: httpx.Response(200, json={"data": [{"id": "tiny"}]})  # noqa: E731
    assert run(check(models, "tiny")) == ["tiny"]
    with pytest.raises(UserError, match="serves: tiny"):
        run(check(models, "other"))
    with pytest.raises(UserError, match="http"):
        EndpointClient("localhost:8000", "m")
