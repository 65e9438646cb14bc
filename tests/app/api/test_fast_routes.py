"""The two completion endpoints served ahead of FastAPI's router (app/api/fast_routes.py) answer every body as
FastAPI's routes answered it: the same status and the same body, over a table of good and bad requests; and
they really are served there (FastAPI's router never sees them)."""

from __future__ import annotations

import contextlib
import json

import httpx
import pytest

from app.api.fast_routes import CompletionRoutes, is_json
from tests.app.in_process_gateway import in_process_gateway
from tests.support.fake_engine import Answer, EngineConfig, FakeEngine
from tests.support.loopback import served

pytestmark = pytest.mark.timeout(120)
CHAT, COMPLETIONS = "/v1/chat/completions", "/v1/completions"
JSON = "application/json"
USER = [{"role": "user", "content": "hi"}]


def body(value: object) -> bytes:
    return json.dumps(value).encode()


# (path, body bytes, content-type or None): what a client may send, well-formed or not.
CASES = [
    (CHAT, body({"model": "stub", "messages": USER}), JSON),
    (CHAT, body({"model": "stub", "messages": USER, "max_tokens": 3, "logprobs": True, "top_logprobs": 2}), JSON),
    (CHAT, body({"model": "stub", "messages": USER}), "application/json; charset=utf-8"),
    (CHAT, body({"model": "stub", "messages": USER}), "Application/JSON"),
    (CHAT, body({"model": "stub", "messages": USER}), "application/vnd.api+json"),
    (CHAT, body({"model": "stub", "messages": USER}), None),  # no Content-Type: bytes, refused
    (CHAT, body({"model": "stub", "messages": USER}), "text/plain"),
    (CHAT, b'{"model": "stub", "messages": [', JSON),
    (CHAT, b'{"model": "\xff\xfe"}', JSON),  # not UTF-8
    (CHAT, b"[" * 5000 + b"]" * 5000, JSON),  # deeper than the parser goes
    (CHAT, b"", JSON),
    (CHAT, b"null", JSON),
    (CHAT, b"{}", JSON),
    (CHAT, b"[1, 2]", JSON),
    (CHAT, b'"text"', JSON),
    (CHAT, body({"model": "stub", "messages": USER, "priority": 1}), JSON),
    (CHAT, body({"model": "stub", "messages": USER, "temperature": 9}), JSON),
    (CHAT, body({"model": "stub", "messages": []}), JSON),
    (CHAT, b'{"model": "stub", "messages": [{"role": "user", "content": "hi"}], "temperature": NaN}', JSON),
    (CHAT, b'{"model": "stub", "messages": [{"role": "user", "content": "\\ud800"}]}', JSON),
    (CHAT, body({"model": "stub", "messages": [{"role": "robot", "content": "hi"}]}), JSON),
    (CHAT, body({"model": "stub", "messages": [{"role": "user", "content": [{"type": "video", "x": 1}]}]}), JSON),
    (CHAT, body({"model": "stub", "messages": [{"role": "tool", "content": "x"}]}), JSON),
    (CHAT, body({"model": "stub", "messages": USER, "tools": [{"type": "function"}]}), JSON),
    (CHAT, body({"model": "nope", "messages": USER}), JSON),
    (CHAT, body({"model": "stub", "messages": USER, "max_tokens": 10**6}), JSON),
    (CHAT, body({"model": "stub", "messages": USER, "n": 2, "stop": ["a"] * 5}), JSON),
    (COMPLETIONS, body({"model": "stub", "prompt": "hi", "max_tokens": 3}), JSON),
    (COMPLETIONS, body({"model": "stub", "prompt": ["a", "b"], "logprobs": 2}), JSON),
    (COMPLETIONS, body({"model": "stub", "prompt": [[1, 2], []]}), JSON),
    (COMPLETIONS, body({"model": "stub", "prompt": []}), JSON),
    (COMPLETIONS, body({"model": "stub", "prompt": "hi", "logprobs": 21}), JSON),
    (COMPLETIONS, body({"model": "stub", "prompt": "hi", "echo": True}), JSON),
    (COMPLETIONS, body({"model": "stub"}), JSON),
    (COMPLETIONS, b'{"model": "stub", "prompt": "hi", "seed": 1e999}', JSON),
]


def find_fast_routes(app) -> CompletionRoutes:
    layer = app.middleware_stack
    while layer is not None and not isinstance(layer, CompletionRoutes):
        layer = getattr(layer, "app", None)
    assert layer is not None, "the gateway has no CompletionRoutes in its middleware"
    return layer


@contextlib.contextmanager
def fastapi_routing(app):
    """FastAPI's routes serve the completion endpoints for the block (the gateway before the raw routes)."""
    fast = find_fast_routes(app)
    routes, fast.routes = fast.routes, {}
    try:
        yield
    finally:
        fast.routes = routes


@pytest.fixture
async def gateway():
    engine = FakeEngine(EngineConfig(answer=Answer(text="ok", id="cmpl-fixed")))
    async with served(engine) as engine_url, in_process_gateway(engine_url) as (url, app):
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            yield client, app


def comparable(response: httpx.Response) -> tuple:
    try:
        content: object = response.json()
    except ValueError:
        content = response.content
    return response.status_code, response.headers.get("content-type"), response.headers.get("x-moe-variant"), content


async def test_the_raw_routes_answer_every_body_as_fastapis_routes_did(gateway):
    client, app = gateway
    refused = 0
    for path, content, content_type in CASES:
        headers = {"content-type": content_type} if content_type else {}
        fast = comparable(await client.post(path, content=content, headers=headers))
        with fastapi_routing(app):
            before = comparable(await client.post(path, content=content, headers=headers))
        assert fast == before, (path, content[:80], content_type)
        refused += fast[0] >= 400
    assert 20 < refused < len(CASES)  # the table holds both refusals and answers


async def test_the_completion_endpoints_never_reach_fastapis_router(gateway):
    client, app = gateway
    fast = find_fast_routes(app)
    seen: list[str] = []
    inner = fast.app

    async def spy(scope, receive, send):
        seen.append(f"{scope.get('method')} {scope.get('path')}")
        await inner(scope, receive, send)

    fast.app = spy
    try:
        assert (await client.post(CHAT, json={"model": "stub", "messages": USER})).status_code == 200
        assert (await client.post(COMPLETIONS, json={"model": "stub", "prompt": "hi"})).status_code == 200
        assert (await client.post(CHAT, json={"model": "stub", "messages": []})).status_code == 400
        assert seen == []
        # Everything else still goes to FastAPI: another method, another path, a trailing slash.
        assert (await client.get(CHAT)).status_code == 405
        assert (await client.get("/v1/models")).status_code == 200
        await client.post(CHAT + "/", json={"model": "stub", "messages": USER})
        assert seen == [f"GET {CHAT}", "GET /v1/models", f"POST {CHAT}/"]
    finally:
        fast.app = inner


async def test_the_openapi_schema_still_describes_both_endpoints_with_their_models(gateway):
    client, _ = gateway
    paths = (await client.get("/openapi.json")).json()["paths"]
    for path, model in ((CHAT, "ChatCompletionRequest"), (COMPLETIONS, "CompletionRequest")):
        schema = paths[path]["post"]["requestBody"]["content"]["application/json"]["schema"]
        assert schema["$ref"].endswith("/" + model)


@pytest.mark.parametrize(
    ("content_type", "expected"),
    [
        (b"application/json", True),
        (b"application/json; charset=utf-8", True),
        (b"APPLICATION/JSON", True),
        (b"application/problem+json", True),
        (b"application/jsonx", False),
        (b"text/json", False),
        (b"multipart/form-data", False),
        (None, False),
    ],
)
def test_json_content_types_are_fastapis(content_type, expected):
    assert is_json(content_type) is expected
