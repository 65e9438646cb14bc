"""A backend is where one variant's requests go: a managed engine or a remote vLLM server."""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field

from app.engines.process import EngineProcess
from app.trace import CURRENT


@dataclass
class Backend:
    variant: str
    served_model: str | None
    remote_url: str | None = None
    engine: EngineProcess | None = None
    up: bool = False
    restarts: int = 0
    last_error: str | None = None
    in_flight: int = 0  # sequences (prompts x n), not HTTP requests
    max_in_flight: int = 64
    max_model_len: int | None = None  # the engine's context, from its /v1/models (None: it did not say)
    api_key: str | None = None  # sent upstream: a managed engine's random key, or a url: variant's key
    tls: ssl.SSLContext | None = None  # an https url: variant's verifying context (app/serving/tls.py)
    # A managed engine that another process owns (the serve process of a multi-worker gateway, app/workers):
    # reached at remote_url and only probed here, never started or stopped, but still reported as managed.
    attached: bool = False
    extra: dict = field(default_factory=dict)

    def upstream_headers(self) -> dict[str, str]:
        """Headers every call to this backend's engine carries: its API key, when it has one, and inside a
        request, that request's id and trace context (app/trace.py)."""
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        trace = CURRENT.get()
        if trace is not None:
            headers.update(trace.upstream_headers())
        return headers

    @property
    def url(self) -> str:
        if self.engine is not None:
            return self.engine.url
        assert self.remote_url is not None, "a backend has a managed engine or a remote url"
        return self.remote_url

    @property
    def managed(self) -> bool:
        return self.engine is not None or self.attached

    def describe(self) -> dict:
        state = {"variant": self.variant, "up": self.up, "managed": self.managed, "restarts": self.restarts}
        if self.last_error and not self.up:
            state["error"] = self.last_error
        return state
