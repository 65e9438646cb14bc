"""Optional OTLP spans: one server span per request (the gateway hop), a client span per engine call.

Off unless an OTLP traces endpoint is configured (`MOEPRUNE_OTLP_TRACES_ENDPOINT`,
else OpenTelemetry's own `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`): then every method
here is a no-op and nothing of OpenTelemetry's SDK is imported, so the hot path
pays nothing for a feature it does not use.

The spans and the headers tell one story. The request span's ids become the
request's `TraceContext` (app/trace.py): its trace id is the client's (or a new
trace's), its span id is what the engines see as their parent. Inside an engine
call the context's span id is the call's own client span, so a vLLM engine
started with `--otlp-traces-endpoint` hangs its spans under the call that made
them, and the base cross-check and self-consistency calls show up as siblings
of the main call.

Export is OTLP over HTTP (protobuf), batched in a background thread: a slow or
absent collector never delays an answer; spans that cannot be sent are dropped
by the SDK with a log line.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterator

from app.trace import CURRENT, TraceContext

TRACER_NAME = "moeprune.gateway"
# Each export (its retries included) gives up after this, unless OpenTelemetry's own timeout variables say
# otherwise: the SDK's 10 s default held a gateway's shutdown ~9 s when the collector was gone.
EXPORT_TIMEOUT_S = 3.0
TIMEOUT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT")
# Attributes copied from the access-log fields onto the request span (app/serving/exchange.py).
ANNOTATED = {
    "variant": "moeprune.variant",
    "experiment": "moeprune.experiment",
    "endpoint": "moeprune.endpoint",
    "stream": "moeprune.stream",
    "status": "http.response.status_code",
    "prompt_tokens": "gen_ai.usage.input_tokens",
    "completion_tokens": "gen_ai.usage.output_tokens",
    "ttft_ms": "moeprune.ttft_ms",
}


def traces_endpoint(configured: str | None) -> str | None:
    """The OTLP/HTTP traces URL: the gateway's setting, else OpenTelemetry's standard variable."""
    endpoint = configured or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or None
    return endpoint.strip() or None if endpoint else None


class Spans:
    """The gateway's span source; `Spans(None)` is the disabled one."""

    def __init__(self, provider=None):
        self.provider = provider
        self.tracer = provider.get_tracer(TRACER_NAME) if provider is not None else None

    @classmethod
    def from_endpoint(cls, endpoint: str | None, service_name: str = "moeprune-gateway") -> Spans:
        if not endpoint:
            return cls(None)
        if not endpoint.startswith(("http://", "https://")):
            raise ValueError(
                f"the OTLP traces endpoint {endpoint!r} is not an http(s) URL; set "
                "MOEPRUNE_OTLP_TRACES_ENDPOINT to e.g. http://collector:4318/v1/traces"
            )
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
        timeout = None if any(name in os.environ for name in TIMEOUT_VARIABLES) else EXPORT_TIMEOUT_S
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint, timeout=timeout)))
        return cls(provider)

    @property
    def enabled(self) -> bool:
        return self.tracer is not None

    @contextlib.contextmanager
    def request(self, trace: TraceContext, method: str, path: str) -> Iterator[TraceContext]:
        """The request's span, current for the block; yields `trace` carrying that span's ids."""
        if self.tracer is None:
            yield trace
            return
        from opentelemetry import context
        from opentelemetry import trace as otel
        from opentelemetry.trace import SpanKind

        parent = _remote_parent(trace)
        span = self.tracer.start_span(
            f"{method} {path}",
            context=parent,
            kind=SpanKind.SERVER,
            attributes={"http.request.method": method, "url.path": path, "moeprune.request_id": trace.request_id},
        )
        ids = span.get_span_context()
        token = context.attach(otel.set_span_in_context(span))
        try:
            yield dataclasses.replace(
                trace, trace_id=f"{ids.trace_id:032x}", span_id=f"{ids.span_id:016x}", flags=f"{ids.trace_flags:02x}"
            )
        except BaseException as exc:
            span.record_exception(exc)
            raise
        finally:
            context.detach(token)
            span.end()

    def annotate(self, fields: dict) -> None:
        """Copy what the access log knows (variant, experiment, flags, status, tokens) onto the request span."""
        if self.tracer is None:
            return
        from opentelemetry import trace as otel

        span = otel.get_current_span()
        if not span.is_recording():
            return
        for key, name in ANNOTATED.items():
            value = fields.get(key)
            if value is not None:
                span.set_attribute(name, value)
        flags = fields.get("flags")
        if isinstance(flags, list | tuple):
            span.set_attribute("moeprune.flags", [str(flag) for flag in flags])
        status = fields.get("status")
        if isinstance(status, int) and status >= 500:
            from opentelemetry.trace import Status, StatusCode

            span.set_status(Status(StatusCode.ERROR, f"HTTP {status}"))

    @contextlib.contextmanager
    def engine_call(self, variant: str, path: str, purpose: str = "answer") -> Iterator[None]:
        """A client span around one engine call; the call's traceparent names it as the engine's parent.

        `purpose`: answer (the main call), base_check, self_consistency. Outside a request (health
        probes) there is no trace and no span.
        """
        trace = CURRENT.get()
        if self.tracer is None or trace is None:
            yield
            return
        from opentelemetry.trace import SpanKind, Status, StatusCode

        span = self.tracer.start_span(
            f"engine POST {path}",
            kind=SpanKind.CLIENT,
            attributes={"moeprune.variant": variant, "moeprune.call": purpose, "url.path": path},
        )
        token = CURRENT.set(dataclasses.replace(trace, span_id=f"{span.get_span_context().span_id:016x}"))
        try:
            yield
        except BaseException as exc:
            span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            raise
        finally:
            CURRENT.reset(token)
            span.end()

    def shutdown(self) -> None:
        """Flush what is batched (bounded by the SDK's export timeout) and stop the export thread."""
        if self.provider is not None:
            self.provider.shutdown()


def _remote_parent(trace: TraceContext):
    """The client's span as the parent context, or None (a new trace) when the request brought none."""
    if trace.parent_span_id is None:
        return None
    from opentelemetry import trace as otel
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, TraceState

    state = TraceState.from_header([trace.tracestate]) if trace.tracestate else None
    remote = SpanContext(
        int(trace.trace_id, 16),
        int(trace.parent_span_id, 16),
        is_remote=True,
        trace_flags=TraceFlags(int(trace.flags, 16)),
        trace_state=state,
    )
    return otel.set_span_in_context(NonRecordingSpan(remote))
