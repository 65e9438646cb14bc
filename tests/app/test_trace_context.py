"""X-Request-Id and W3C trace context reach the engine on every upstream call made for a request."""

from __future__ import annotations

import httpx
import pytest

from app.trace import parse_traceparent
from tests.app.in_process_gateway import AccessRecords
from tests.support.fake_engine import FakeEngine
from tests.support.loopback import served, wait_until

pytestmark = pytest.mark.timeout(120)
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


@pytest.fixture
async def gateway():
    engine = FakeEngine()  # it records every request, headers too
    async with served(engine) as engine_url:
        # `stub` is cut from `base` (the same engine): its answers get the base cross-check and two
        # self-consistency samples, each an upstream call of its own.
        variants = {"base": {"url": engine_url}, "stub": {"url": engine_url, "base": "base", "self_consistency": 2}}
        from app.config.settings import Settings
        from app.config.variants import parse_config
        from app.main import create_app

        app = create_app(Settings(health_interval_s=0.2), parse_config({"variants": variants}))
        async with served(app) as url:
            backends = app.state.gateway.backends.values()
            assert await wait_until(lambda: all(backend.up for backend in backends), timeout=20)
            async with httpx.AsyncClient(base_url=url, timeout=20) as client:
                yield client, engine


async def test_request_id_and_traceparent_reach_every_engine_call_of_the_request(gateway):
    client, engine = gateway
    with AccessRecords().attached() as records:
        response = await client.post(
            "/v1/completions",
            json={"model": "stub", "prompt": "hi", "max_tokens": 2},
            headers={"x-request-id": "req-42", "traceparent": TRACEPARENT, "tracestate": "vendor=abc"},
        )
    assert response.status_code == 200, response.text
    assert response.headers["x-request-id"] == "req-42"
    calls = engine.calls
    # the answer, the base cross-check, the self-consistency samples
    assert len(calls) >= 3 and all(path == "/v1/completions" for path, _ in calls)
    parents = set()
    for _, headers in calls:
        assert headers["x-request-id"] == "req-42" and headers["tracestate"] == "vendor=abc"
        trace_id, _, flags = parse_traceparent(headers["traceparent"])
        assert (trace_id, flags) == (TRACE_ID, "01")
        parents.add(headers["traceparent"].split("-")[2])
    assert len(parents) == 1 and parents != {"00f067aa0ba902b7"}  # the gateway's own span is the parent
    access = next(record for record in records.records if getattr(record, "request_id", None) == "req-42")
    assert access.trace_id == TRACE_ID

    engine.requests.clear()
    streamed = await client.post(
        "/v1/completions",
        json={"model": "stub", "prompt": "hi", "stream": True},
        headers={"x-request-id": "req-43", "traceparent": TRACEPARENT},
    )
    assert streamed.status_code == 200 and streamed.headers["x-request-id"] == "req-43"
    assert engine.calls and all(h["x-request-id"] == "req-43" and TRACE_ID in h["traceparent"] for _, h in engine.calls)
    assert all("tracestate" not in h for _, h in engine.calls)


@pytest.mark.parametrize(
    "bad",
    [
        "garbage",
        f"00-{'0' * 32}-00f067aa0ba902b7-01",
        f"ff-{TRACE_ID}-00f067aa0ba902b7-01",
        f"00-{TRACE_ID.upper()}-00f067aa0ba902b7-01",
        f"00-{TRACE_ID}-00f067aa0ba902b7-01-x",
    ],
)
async def test_a_malformed_traceparent_starts_a_fresh_trace_never_an_error(gateway, bad):
    client, engine = gateway
    response = await client.post(
        "/v1/completions",
        json={"model": "base", "prompt": "hi", "max_tokens": 2},
        headers={"traceparent": bad, "tracestate": "vendor=abc"},
    )
    assert response.status_code == 200, response.text
    request_id = response.headers["x-request-id"]
    assert len(request_id) == 32  # made by the gateway
    ((_, headers),) = engine.calls
    trace_id, _, flags = parse_traceparent(headers["traceparent"])
    assert trace_id != TRACE_ID and flags == "01"
    assert headers["x-request-id"] == request_id and "tracestate" not in headers  # dropped with its traceparent
