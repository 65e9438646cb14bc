"""The request's trace context: `X-Request-Id` and W3C `traceparent`/`tracestate`, carried to every engine call.

The RequestId middleware (app/api/middleware.py) sets `CURRENT` once per
request; everything that calls an engine for that request (the main call, a
stream, the base cross-check, self-consistency samples, a cascade's re-ask)
adds `upstream_headers()` through `Backend.upstream_headers()`. Health probes
and other background calls run outside any request and carry none.

The gateway is one hop of the trace: it keeps the client's trace id and flags
and sends its own span id as the parent to the engine. A missing or malformed
`traceparent` (W3C Trace Context level 1: `00-<32 hex>-<16 hex>-<2 hex>`, ids
not all zeros, version not `ff`) starts a fresh trace (sampled flag set);
its `tracestate` is then dropped too. Never an error to the client.
"""

from __future__ import annotations

import contextvars
import re
import secrets
from dataclasses import dataclass

TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-[^\s]*)?")
MAX_TRACESTATE = 512  # W3C: 32 list members; vendors may truncate beyond 512 characters
REQUEST_ID = re.compile(r"[\x21-\x7e]{1,64}")  # visible ASCII, as it is sent on to the engines


@dataclass(frozen=True)
class TraceContext:
    request_id: str
    trace_id: str
    span_id: str  # the gateway's own span: the parent of every engine call
    flags: str = "01"
    tracestate: str | None = None
    parent_span_id: str | None = None  # the client's span, when its traceparent was valid (app/spans.py)

    @property
    def traceparent(self) -> str:
        return f"00-{self.trace_id}-{self.span_id}-{self.flags}"

    def upstream_headers(self) -> dict[str, str]:
        headers = {"x-request-id": self.request_id, "traceparent": self.traceparent}
        if self.tracestate:
            headers["tracestate"] = self.tracestate
        return headers


CURRENT: contextvars.ContextVar[TraceContext | None] = contextvars.ContextVar("moeprune_trace", default=None)


def parse_traceparent(value: str | None) -> tuple[str, str, str] | None:
    """(trace id, parent span id, flags) of a valid W3C traceparent; None for a missing or malformed one."""
    match = TRACEPARENT.fullmatch(value.strip()) if value else None
    if match is None:
        return None
    version, trace_id, parent_id, flags, rest = match.groups()
    if version == "ff" or (version == "00" and rest) or set(trace_id) == {"0"} or set(parent_id) == {"0"}:
        return None
    return trace_id, parent_id, flags


def request_id_of(value: str | None) -> str:
    """The client's X-Request-Id when it is 1-64 visible ASCII characters; else a fresh one."""
    return value if value and REQUEST_ID.fullmatch(value) else secrets.token_hex(16)


def trace_context(request_id: str | None, traceparent: str | None, tracestate: str | None) -> TraceContext:
    """The context for one request from its headers (each may be absent)."""
    parent = parse_traceparent(traceparent)
    if parent is None:
        trace_id, parent_id, flags, tracestate = secrets.token_hex(16), None, "01", None
    else:
        trace_id, parent_id, flags = parent
        tracestate = tracestate.strip() if tracestate and len(tracestate) <= MAX_TRACESTATE else None
    return TraceContext(request_id_of(request_id), trace_id, secrets.token_hex(8), flags, tracestate or None, parent_id)
