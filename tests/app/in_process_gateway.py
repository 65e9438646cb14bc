"""A real gateway app in this process (real uvicorn on loopback, no keys) in front of one engine URL, and a
collector of its access-log records."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from tests.support.loopback import served, wait_until


class AccessRecords(logging.Handler):
    """Collects the gateway's access-log records (its loggers do not propagate to pytest's caplog)."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def statuses(self) -> list[int]:
        return [record.status for record in self.records if hasattr(record, "status")]

    @contextlib.contextmanager
    def attached(self, name: str = "moeprune.access"):
        logger = logging.getLogger(name)
        logger.addHandler(self)
        try:
            yield self
        finally:
            logger.removeHandler(self)


@contextlib.asynccontextmanager
async def in_process_gateway(upstream_url: str, variant: dict | None = None, **settings) -> AsyncIterator[tuple]:
    """A real gateway app with one `url:` variant `stub`; yields (url, app) once the variant is up."""
    from app.config.settings import Settings
    from app.config.variants import parse_config
    from app.main import create_app

    options = {"health_interval_s": 0.2, **settings}
    config = parse_config({"variants": {"stub": {"url": upstream_url, **(variant or {})}}})
    app = create_app(Settings(**options), config)
    async with served(app) as url:
        backend = app.state.gateway.backends["stub"]
        if not await wait_until(lambda: backend.up, timeout=20):
            raise RuntimeError(f"the stub variant never came up: {backend.last_error}")
        yield url, app
