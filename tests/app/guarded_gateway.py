"""An in-process gateway whose `url:` variants are the session gateway's real vLLM engines, with guards.

The session fixture (tests/app/conftest.py) runs the tiny base and its pruned
copy as managed engines on pinned ports with pinned keys; this gateway reaches
them directly, so guard tests add no engine start-up. `down` is a URL nothing
listens on: the fallback that is down.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

from testkit.vllm_server import free_port
from tests.support.loopback import served, wait_until

IN_DOMAIN = "Which drug class does Mirfaortdustat belong to?"  # the demo's biomedical calibration domain
OUT_OF_DOMAIN = "Which currency do people use in Galgalunkiia?"
# A low_confidence threshold every answer is below (mean logprob < 0): the flag is forced on every answer.
FORCED_FLAG_CARD = {
    "schema_version": 1,
    "variant": "pruned",
    "model": "pruned",
    "tasks": {},
    "flags": {"low_confidence": {"signal": "mean_logprob", "direction": "below", "threshold": 0.0}},
}


def guarded_variants(running, gate_file: Path, card: Path) -> dict:
    base_url, base_key = running.engines["base"]
    pruned_url, pruned_key = running.engines["pruned"]
    base = {"url": base_url, "api_key_env": base_key, "served_model_name": "base"}
    pruned = {"url": pruned_url, "api_key_env": pruned_key, "served_model_name": "pruned", "base": "base"}
    gate = {"file": str(gate_file)}
    return {
        "base": base,
        "down": {"url": f"http://127.0.0.1:{free_port()}", "served_model_name": "base"},
        "gated": {**pruned, "guard": {"domain_gate": {**gate, "fallback": "base"}}},
        "cascaded": {
            **pruned,
            "report_card": str(card),
            "guard": {"cascade": {"flags": ["low_confidence"], "fallback": "base"}},
        },
        "orphan": {
            **pruned,
            "report_card": str(card),
            "guard": {
                "domain_gate": {**gate, "fallback": "down"},
                "cascade": {"flags": ["low_confidence"], "fallback": "down"},
            },
        },
    }


@contextlib.asynccontextmanager
async def guarded_gateway(running, work: Path, gate_file: Path) -> AsyncIterator[tuple[str, object]]:
    """(url, app) of the gateway; every variant but `down` is up before it yields."""
    from app.config.settings import Settings
    from app.config.variants import parse_config
    from app.main import create_app

    card = work / "forced_flag_card.json"
    card.write_text(json.dumps(FORCED_FLAG_CARD))
    config = parse_config({"variants": guarded_variants(running, gate_file, card)})
    app = create_app(Settings(health_interval_s=0.2, max_tokens_limit=256), config)
    async with served(app) as url:
        backends = app.state.gateway.backends
        up = lambda: all(b.up for name, b in backends.items() if name != "down")  # noqa: E731
        if not await wait_until(up, timeout=30):
            raise RuntimeError({name: b.last_error for name, b in backends.items()})
        yield url, app
