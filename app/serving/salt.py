"""A per-key `cache_salt` for vLLM's prefix cache, so one tenant cannot time another's prompt prefixes.

The salt is an HMAC of the key's id under a secret drawn when the gateway
starts: stable for a key while the gateway runs (its own prefix cache keeps
working), unguessable by anyone else, and never the client's own value.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, field


@dataclass
class CacheSalt:
    secret: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    _cache: dict[str, str] = field(default_factory=dict)

    def for_key(self, key_id: str) -> str:
        salt = self._cache.get(key_id)
        if salt is None:
            salt = hmac.new(self.secret, key_id.encode(), hashlib.sha256).hexdigest()[:32]
            if len(self._cache) < 10_000:  # bounded: key ids come from the configured keys
                self._cache[key_id] = salt
        return salt
