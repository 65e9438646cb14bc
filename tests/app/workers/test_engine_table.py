"""A worker takes the owning process's word for its engines' state, both ways (app/workers/engines.py)."""

from __future__ import annotations

from app.engines.backends import Backend
from app.workers.engines import EngineAddress, apply, attach


def test_an_engine_the_owner_found_up_is_up_in_the_worker_at_once():
    # Without it a worker said the engine was down (/ready 503, backend_up 0) until its own first probe.
    backend = Backend("a", "a", last_error="the engine is not up yet")
    attach({"a": backend}, {"a": EngineAddress("http://127.0.0.1:9", "k", up=True, restarts=1, error=None)})
    assert backend.up and backend.last_error is None and backend.attached and backend.engine is None
    assert (backend.remote_url, backend.api_key, backend.restarts) == ("http://127.0.0.1:9", "k", 1)


def test_an_engine_the_owner_saw_go_down_is_down_with_its_reason():
    backend = Backend("a", "a", up=True)
    apply(backend, EngineAddress("http://127.0.0.1:9", "k", up=False, restarts=2, error="exited with code -9"))
    assert not backend.up and backend.last_error == "exited with code -9"
    apply(backend, EngineAddress("http://127.0.0.1:9", "k", up=False, restarts=2, error=None))
    assert backend.last_error == "the engine is not up yet"
