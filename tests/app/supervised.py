"""In-process supervision for tests: real keeper and engine processes (tests/support/fake_engine.py), real sockets."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import psutil

from app.config.settings import Settings
from app.config.variants import parse_config
from app.engines.backends import Backend
from app.engines.supervisor import Supervisor, build_backends
from tests.support import fake_engine

FAKE_ENGINE = Path(fake_engine.__file__)
FAKE_LAUNCHER = f"{sys.executable} {FAKE_ENGINE}"
FAST = {
    "health_interval_s": 0.2,
    "restart_backoff_s": 0.2,
    "restart_backoff_max_s": 0.5,
    "engine_stop_grace_s": 2,
    "engine_start_timeout_s": 20,
}


def fast_settings(**overrides) -> Settings:
    return Settings(**{"launcher": FAKE_LAUNCHER, **FAST, **overrides})


@contextlib.asynccontextmanager
async def supervised(
    variants: dict, work_dir: Path, **settings
) -> AsyncIterator[tuple[Supervisor, dict[str, Backend]]]:
    """Start a Supervisor for `variants` (a variants-file mapping); always stop it."""
    config = parse_config({"variants": variants})
    options = fast_settings(**settings)
    backends = build_backends(config, options, work_dir)
    async with httpx.AsyncClient() as client:
        supervisor = Supervisor(backends, client, options)
        try:
            supervisor.start()
            yield supervisor, backends
        finally:
            await supervisor.stop()


async def eventually(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout}s: {what}"
        await asyncio.sleep(0.1)


def alive(pid: int) -> bool:
    with contextlib.suppress(psutil.Error):
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    return False


def engine_pid(backend: Backend) -> int:
    """The fake engine under the backend's keeper."""
    return backend.engine.process_tree()[0].pid


class Records(logging.Handler):
    """Collects the supervisor's log records (the gateway's loggers do not propagate to caplog)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def events(self) -> list[str]:
        return [record.getMessage() for record in self.records]


@contextlib.contextmanager
def supervisor_log():
    logger = logging.getLogger("moeprune.supervisor")
    handler, level = Records(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
