"""A resumable on-disk cache of endpoint responses, keyed by the request's content.

An append-only JSON-lines file: each finished request adds one line and is
flushed at once, so an interrupted run keeps everything it finished and a
rerun sends only what is missing. A torn last line (the process was killed
mid-write) is skipped, not fatal.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path


def request_key(endpoint: str, route: str, body: dict) -> str:
    """sha256 of the endpoint, route and body (canonical JSON): same request, same key."""
    canonical = json.dumps(
        {"endpoint": endpoint.rstrip("/"), "route": route, "body": body}, sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


class ResponseCache:
    """Responses by request key, loaded from and appended to `path`."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.entries: dict[str, dict] = {}
        self.hits = 0
        if self.path.exists():
            self._load()

    def _load(self) -> None:
        with open(self.path, encoding="utf-8") as handle:
            for line in handle:
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a torn write from an interrupted run: that request is simply redone
                if isinstance(record, dict) and "key" in record and "response" in record:
                    self.entries[record["key"]] = record["response"]

    def get(self, key: str) -> dict | None:
        response = self.entries.get(key)
        if response is not None:
            self.hits += 1
        return response

    def put(self, key: str, response: dict) -> None:
        self.entries[key] = response
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps({"key": key, "response": response}) + "\n")
            handle.flush()

    def __len__(self) -> int:
        return len(self.entries)
