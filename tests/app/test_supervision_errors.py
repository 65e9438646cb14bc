"""Engine start failures: the gateway stays up, says why (with the engine's log tail), answers 503.

Uses a launcher that fails like a broken engine would, so no vLLM is needed.
"""

from __future__ import annotations

import sys
import time

import httpx

from tests.app.gateway_process import start_gateway

BROKEN_LAUNCHER = f"{sys.executable} -c \"import sys; print('CUDA out of memory (simulated)'); sys.exit(3)\""


def test_failed_engine_start_is_reported_and_requests_get_503(tmp_path):
    (tmp_path / "ckpt").mkdir()
    config = tmp_path / "variants.yaml"
    config.write_text("variants:\n  broken:\n    model: ckpt\n")
    gateway = start_gateway(config, tmp_path, env={"MOEPRUNE_LAUNCHER": BROKEN_LAUNCHER,
                                                    "MOEPRUNE_RESTART_BACKOFF_S": "5"})
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                ready = httpx.get(gateway.url + "/ready", timeout=5)
                if "CUDA out of memory" in ready.text:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, gateway.log_tail()
            time.sleep(0.3)
        assert httpx.get(gateway.url + "/health", timeout=5).status_code == 200
        assert ready.status_code == 503
        state = ready.json()["variants"][0]
        assert state["up"] is False and "exited with code 3" in state["error"]
        response = httpx.post(gateway.url + "/v1/completions", headers=gateway.headers, timeout=10,
                              json={"model": "broken", "prompt": "x", "max_tokens": 2})
        assert response.status_code == 503 and response.headers["retry-after"] == "5"
        assert response.json()["error"]["code"] == "engine_unavailable"
        assert "engine failed to start" in gateway.log_tail()
    finally:
        gateway.shutdown()
