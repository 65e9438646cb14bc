"""Request size cap and request ids, in-process (ASGI transport, no engines needed)."""

from __future__ import annotations

import httpx
import pytest

from app.config.settings import Settings
from app.config.variants import parse_config
from app.main import create_app


@pytest.fixture
def app():
    settings = Settings(max_request_bytes=2048)
    return create_app(settings, parse_config({"variants": {"remote": {"url": "http://127.0.0.1:9"}}}))


async def post(app, content, headers=None):
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
        return await client.post(
            "/v1/completions", content=content, headers={"content-type": "application/json", **(headers or {})}
        )


async def chunks(*parts: bytes):
    for part in parts:
        yield part


async def test_declared_oversize_body_is_413(app):
    response = await post(app, b"x" * 5000)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"


async def test_chunked_oversize_body_is_413_too(app):
    response = await post(app, chunks(b"{" + b" " * 1500, b" " * 1500 + b"}"))
    assert response.status_code == 413


async def test_small_chunked_body_reaches_the_api(app):
    response = await post(app, chunks(b'{"model": "nope", ', b'"prompt": "x"}'), headers={"x-request-id": "abc"})
    assert response.status_code == 404
    assert response.headers["x-request-id"] == "abc"


async def test_every_response_gets_a_request_id(app):
    response = await post(app, b"{not json")
    assert response.status_code == 400 and len(response.headers["x-request-id"]) == 32
