"""Structured access logs: one JSON line per request with the agreed fields, and no prompt or answer text."""

from __future__ import annotations

import json

import httpx
import pytest

pytestmark = pytest.mark.slow


def test_access_log_is_json_with_ids_and_without_text(gateway):
    secret = "Patient Jane Roe, MRN 55501, asks about metformin"
    response = httpx.post(
        gateway.url + "/v1/chat/completions",
        headers={**gateway.headers, "x-request-id": "req-77"},
        json={"model": "pruned", "messages": [{"role": "user", "content": secret}], "max_tokens": 3},
        timeout=60,
    )
    assert response.status_code == 200 and response.headers["x-request-id"] == "req-77"
    answer = response.json()["choices"][0]["message"]["content"]
    lines = [json.loads(line) for line in gateway.log_path.read_text().splitlines() if line.startswith("{")]
    record = next(line for line in lines if line.get("request_id") == "req-77")
    assert record["variant"] == "pruned" and record["status"] == 200
    assert record["completion_tokens"] == 3 and record["prompt_tokens"] > 0
    assert record["latency_ms"] > 0 and isinstance(record["flags"], list)
    text = gateway.log_path.read_text()
    assert "MRN 55501" not in text
    assert "completion_text" not in record and "prompt_text" not in record
    assert answer is not None
