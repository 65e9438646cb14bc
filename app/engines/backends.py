"""A backend is where one variant's requests go: a managed engine or a remote vLLM server."""

from __future__ import annotations

from dataclasses import dataclass, field

from app.engines.process import EngineProcess


@dataclass
class Backend:
    variant: str
    served_model: str | None
    remote_url: str | None = None
    engine: EngineProcess | None = None
    up: bool = False
    restarts: int = 0
    last_error: str | None = None
    in_flight: int = 0
    max_in_flight: int = 64
    extra: dict = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.engine.url if self.engine is not None else self.remote_url

    @property
    def managed(self) -> bool:
        return self.engine is not None

    def describe(self) -> dict:
        state = {"variant": self.variant, "up": self.up, "managed": self.managed, "restarts": self.restarts}
        if self.last_error and not self.up:
            state["error"] = self.last_error
        return state
