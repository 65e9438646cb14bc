"""A name kept for one importer this change may not edit: tests/app/test_serve_only_install.py.

The server it named is gone; the evaluator tests use the one fake engine through tests/evaluators/endpoints.py.
Delete this file when that test imports `endpoint` from there instead (`endpoint(lambda request: "Paris",
model="remote-model")` is what it needs).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from tests.evaluators.endpoints import endpoint, last_turn
from tests.support.fake_engine import FakeEngine


@contextlib.contextmanager
def fake_openai_server(
    answer: Callable[[str], str] = lambda prompt: "A", model: str = "fake"
) -> Iterator[tuple[str, FakeEngine]]:
    """Yield (url, engine) of the one fake engine answering every prompt (a chat's last turn) with answer(prompt)."""
    with endpoint(lambda request: answer(last_turn(request)), model=model) as (url, engine):
        yield url, engine
