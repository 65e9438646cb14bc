"""OTLP spans (app/spans.py): a server span per request, a client span per engine call, ids that match the headers.

One test reads the spans from the SDK's in-memory exporter; one sends them over real OTLP/HTTP to a loopback
collector that decodes the protobuf, as an OpenTelemetry Collector would.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from app.config.settings import Settings
from app.config.variants import parse_config
from app.main import create_app
from app.spans import Spans
from app.trace import parse_traceparent
from moeprune.errors import UserError
from tests.app.test_trace_context import TRACE_ID, TRACEPARENT
from tests.support.fake_engine import FakeEngine
from tests.support.loopback import served, wait_until

pytestmark = pytest.mark.timeout(120)
CLIENT_SPAN = TRACEPARENT.split("-")[2]


def variants(engine_url: str) -> dict:
    # `stub` is cut from `base`: an answer gets the base cross-check and two self-consistency samples.
    return {
        "variants": {"base": {"url": engine_url}, "stub": {"url": engine_url, "base": "base", "self_consistency": 2}}
    }


async def serve_gateway(app):
    backends = app.state.gateway.backends.values()
    assert await wait_until(lambda: all(backend.up for backend in backends), timeout=20)


async def test_request_and_engine_call_spans_carry_the_ids_the_engines_see():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    engine = FakeEngine()
    async with served(engine) as engine_url:
        app = create_app(Settings(health_interval_s=0.2), parse_config(variants(engine_url)))
        app.state.gateway.spans = Spans(provider)
        async with served(app) as url:
            await serve_gateway(app)
            async with httpx.AsyncClient(base_url=url, timeout=20) as client:
                response = await client.post(
                    "/v1/completions",
                    json={"model": "stub", "prompt": "hi", "max_tokens": 2},
                    headers={"traceparent": TRACEPARENT, "tracestate": "vendor=abc"},
                )
                assert response.status_code == 200, response.text
                flags = response.json()["reliability"]["flags"]
                engine.requests.clear()
                fresh = await client.post("/v1/completions", json={"model": "base", "prompt": "hi", "max_tokens": 2})
                assert fresh.status_code == 200, fresh.text
                fresh_call_headers = engine.calls[0][1]

    spans = exporter.get_finished_spans()
    servers = [span for span in spans if span.kind == SpanKind.SERVER]
    assert len(servers) == 2
    request = next(span for span in servers if span.attributes["moeprune.variant"] == "stub")
    # One trace with the client: the client's span is the parent of the gateway's.
    assert f"{request.context.trace_id:032x}" == TRACE_ID
    assert f"{request.parent.span_id:016x}" == CLIENT_SPAN and request.parent.is_remote
    assert request.name == "POST /v1/completions"
    assert request.attributes["http.response.status_code"] == 200
    assert list(request.attributes["moeprune.flags"]) == flags
    assert request.attributes["gen_ai.usage.output_tokens"] >= 1

    calls = [
        span for span in spans if span.kind == SpanKind.CLIENT and span.context.trace_id == request.context.trace_id
    ]
    assert sorted(span.attributes["moeprune.call"] for span in calls) == ["answer", "base_check", "self_consistency"]
    assert all(span.parent.span_id == request.context.span_id for span in calls)
    assert {span.attributes["moeprune.variant"] for span in calls} == {"stub", "base"}

    # The request without a traceparent starts a trace whose ids the engine call's header carries.
    fresh_request = next(span for span in servers if span is not request)
    assert fresh_request.parent is None
    (fresh_call,) = [
        span
        for span in spans
        if span.kind == SpanKind.CLIENT and span.context.trace_id == fresh_request.context.trace_id
    ]
    trace_id, parent_id, _ = parse_traceparent(fresh_call_headers["traceparent"])
    assert trace_id == f"{fresh_request.context.trace_id:032x}"
    assert parent_id == f"{fresh_call.context.span_id:016x}"


class Collector:
    """A loopback OTLP/HTTP traces receiver: decodes every export request it gets."""

    def __init__(self) -> None:
        self.requests: list[ExportTraceServiceRequest] = []
        self.content_types: list[str] = []

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        if scope["path"] == "/v1/traces":
            self.content_types.append(dict(scope["headers"]).get(b"content-type", b"").decode())
            self.requests.append(ExportTraceServiceRequest.FromString(body))
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/x-protobuf")]}
        )
        await send({"type": "http.response.body", "body": b""})

    def spans(self) -> list:
        return [
            span
            for request in self.requests
            for resource in request.resource_spans
            for scope in resource.scope_spans
            for span in scope.spans
        ]


async def test_spans_reach_a_real_otlp_http_collector():
    collector = Collector()
    engine = FakeEngine()
    async with served(collector) as collector_url, served(engine) as engine_url:
        settings = Settings(health_interval_s=0.2, otlp_traces_endpoint=f"{collector_url}/v1/traces")
        app = create_app(settings, parse_config(variants(engine_url)))
        async with served(app) as url:
            await serve_gateway(app)
            async with httpx.AsyncClient(base_url=url, timeout=20) as client:
                response = await client.post(
                    "/v1/completions",
                    json={"model": "stub", "prompt": "hi", "max_tokens": 2},
                    headers={"traceparent": TRACEPARENT},
                )
                assert response.status_code == 200, response.text
        # Leaving `served(app)` ran the lifespan's shutdown, which flushes the batch.
        await asyncio.sleep(0)
    assert collector.content_types and set(collector.content_types) == {"application/x-protobuf"}
    spans = collector.spans()
    names = sorted(span.name for span in spans)
    assert "POST /v1/completions" in names and names.count("engine POST /v1/completions") == 3
    request = next(span for span in spans if span.name == "POST /v1/completions")
    assert request.trace_id.hex() == TRACE_ID and request.parent_span_id.hex() == CLIENT_SPAN
    attributes = {item.key: item.value for item in request.attributes}
    assert attributes["moeprune.variant"].string_value == "stub"
    resource = collector.requests[0].resource_spans[0].resource
    assert any(
        item.key == "service.name" and item.value.string_value == "moeprune-gateway" for item in resource.attributes
    )


def test_an_endpoint_that_is_not_a_url_stops_the_start_with_the_fix():
    with pytest.raises(UserError, match="MOEPRUNE_OTLP_TRACES_ENDPOINT"):
        create_app(
            Settings(otlp_traces_endpoint="collector:4318"),
            parse_config({"variants": {"base": {"url": "http://127.0.0.1:9"}}}),
        )


def test_spans_are_off_and_import_nothing_without_an_endpoint(monkeypatch):
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    app = create_app(Settings(), parse_config({"variants": {"base": {"url": "http://127.0.0.1:9"}}}))
    assert not app.state.gateway.spans.enabled
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://127.0.0.1:4318/v1/traces")
    app = create_app(Settings(), parse_config({"variants": {"base": {"url": "http://127.0.0.1:9"}}}))
    assert app.state.gateway.spans.enabled  # OpenTelemetry's standard variable is honoured
    app.state.gateway.spans.shutdown()
