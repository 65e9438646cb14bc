"""An in-process gateway (real uvicorn on loopback, real SQLite file) over stub engines, for experiment tests.

The variants file is written to disk so that a reload (POST /v1/admin/reload,
SIGHUP) has something to re-read; `write_variants` rewrites it.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import yaml

from app.config.settings import Settings
from app.main import create_app
from tests.support.loopback import served, wait_until

KEY, OTHER_KEY = "experiment-key-1", "experiment-key-2"
AUTH, OTHER_AUTH = {"Authorization": f"Bearer {KEY}"}, {"Authorization": f"Bearer {OTHER_KEY}"}


def write_variants(path: Path, urls: dict[str, str], experiment: dict) -> Path:
    path.write_text(
        yaml.safe_dump(
            {"variants": {name: {"url": url} for name, url in urls.items()}, "experiments": {"ab": experiment}}
        )
    )
    return path


@contextlib.asynccontextmanager
async def experiment_gateway(
    tmp_path: Path, urls: dict[str, str], experiment: dict, **settings
) -> AsyncIterator[tuple[httpx.AsyncClient, object]]:
    """Yields (a client with the key, the app); the SQLite file is tmp_path/state/experiments.sqlite3."""
    config_path = write_variants(tmp_path / "variants.yaml", urls, experiment)
    options = {
        "health_interval_s": 0.2,
        "state_dir": tmp_path / "state",
        "api_keys": f"{KEY},{OTHER_KEY}",
        "experiment_flush_interval_s": 0.1,
        **settings,
    }
    app = create_app(Settings(config_path=config_path, **options))
    async with served(app) as url:
        gateway = app.state.gateway
        if not await wait_until(lambda: all(backend.up for backend in gateway.backends.values()), timeout=20):
            raise RuntimeError("the stub engines never came up")
        async with httpx.AsyncClient(base_url=url, headers=AUTH, timeout=30) as client:
            yield client, app


async def complete(client: httpx.AsyncClient, session: str | None = None, prompt: str = "hello") -> httpx.Response:
    headers = {"x-session-id": session} if session else {}
    response = await client.post(
        "/v1/completions", json={"model": "ab", "prompt": prompt, "max_tokens": 2}, headers=headers
    )
    assert response.status_code == 200, response.text
    return response
