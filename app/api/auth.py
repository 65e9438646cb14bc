"""API keys, checked in ASGI middleware before any body is read, failing closed.

`KeyStore` keeps only SHA-256 digests of the keys, re-reads the keys file when
it changes (so a key is revoked without a restart) and compares in constant
time. `ApiKeyAuth` answers 401 for every path except the few public ones
(`/health`, `/ready`, `/metrics`, per their settings), matched exactly on the
decoded path: a trailing slash, another case, a double slash or a percent-encoded
letter is simply not a public path, so it needs the key like everything else.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from app.api.middleware import send_error
from app.config.settings import Settings, read_keys_file
from app.errors import OpenAIError
from moeprune.errors import UserError

log = logging.getLogger("moeprune.auth")

# Re-read the keys file at least this often even when its stat looks unchanged: an in-place
# rewrite of the same size within one filesystem timestamp tick would otherwise go unseen.
REREAD_EVERY_S = 5.0
ANONYMOUS = "anonymous"


def key_id(key: str) -> str:
    """A short, non-reversible name for a key: what logs and per-key limits may carry."""
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # any other name may resolve to a public address: not loopback


@dataclass(frozen=True)
class KeyEntry:
    digest: bytes
    key_id: str
    evaluation: bool


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def _entries(keys: frozenset[str], evaluation_digests: frozenset[bytes]) -> tuple[KeyEntry, ...]:
    return tuple(KeyEntry(_digest(key), key_id(key), _digest(key) in evaluation_digests) for key in keys)


class KeyStore:
    """The valid keys (as digests). `required` is fixed at start: a gateway that started with keys
    never becomes open, even if a reload finds the file empty or unreadable (then no file key works)."""

    def __init__(self, keys: frozenset[str], evaluation: frozenset[str] = frozenset(), keys_file: Path | None = None):
        self._evaluation_digests = frozenset(_digest(key) for key in evaluation)
        self._static = _entries(keys | evaluation, self._evaluation_digests)
        self._file = keys_file
        self._file_entries: tuple[KeyEntry, ...] = ()
        self._file_stat: tuple | None = None
        self._file_read_at = 0.0
        if keys_file is not None:
            keys_in_file = read_keys_file(keys_file)  # an unreadable or empty file stops the start here
            self._load(keys_in_file, os.stat(keys_file))
        self.required = bool(self._static or self._file_entries)

    @classmethod
    def from_settings(cls, settings: Settings) -> KeyStore:
        return cls(settings.static_api_keys(), settings.evaluation_key_set(), settings.api_keys_file)

    def lookup(self, token: str) -> KeyEntry | None:
        """The entry of a presented key, or None. Every entry is compared, so the time taken
        does not depend on which one matched (or how many leading bytes did)."""
        self._maybe_reload()
        digest = _digest(token)
        found = None
        for entry in (*self._static, *self._file_entries):
            if hmac.compare_digest(digest, entry.digest):
                found = entry
        return found

    def _load(self, keys: frozenset[str], stat: os.stat_result) -> None:
        self._file_entries = _entries(keys, self._evaluation_digests)
        self._file_stat = (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)
        self._file_read_at = time.monotonic()

    def _maybe_reload(self) -> None:
        if self._file is None:
            return
        try:
            stat = os.stat(self._file)
        except OSError as exc:
            self._revoke_file_keys(f"cannot stat it: {exc.strerror}")
            return
        signature = (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)
        if signature == self._file_stat and time.monotonic() - self._file_read_at < REREAD_EVERY_S:
            return
        try:
            keys = read_keys_file(self._file, allow_empty=True)
        except UserError as exc:
            self._revoke_file_keys(str(exc))
            return
        changed = signature != self._file_stat
        self._load(keys, stat)
        if changed and keys:
            log.info(f"API keys file re-read: {len(keys)} keys")
        elif changed:
            log.warning("the API keys file holds no keys now: its keys are all revoked (the gateway stays closed)")

    def _revoke_file_keys(self, reason: str) -> None:
        # Fail closed: a keys file we cannot read grants nothing until it can be read again.
        if self._file_entries or self._file_stat is not None:
            log.error(f"API keys file {self._file}: {reason}; its keys are refused until it is readable")
        self._file_entries, self._file_stat = (), None


def refuse_open_gateway(settings: Settings, keys: KeyStore) -> None:
    """Start-up rule: no keys on a non-loopback host is an error unless explicitly allowed."""
    if keys.required:
        return
    if is_loopback(settings.host):
        log.info("no API keys configured: serving without authentication on loopback only")
        return
    if not settings.allow_unauthenticated:
        raise UserError(
            f"refusing to serve on {settings.host} without API keys: anyone who can reach it could use the "
            "engines. Set MOEPRUNE_API_KEYS or MOEPRUNE_API_KEYS_FILE (one key per line), listen on 127.0.0.1, "
            "or set MOEPRUNE_ALLOW_UNAUTHENTICATED=true if something in front of it authenticates"
        )
    log.warning(
        f"serving on {settings.host} WITHOUT authentication (MOEPRUNE_ALLOW_UNAUTHENTICATED=true): "
        "every client can use every variant; /ready reports auth_required=false"
    )


def public_paths(settings: Settings) -> frozenset[str]:
    paths = set()
    if not settings.health_require_key:
        paths |= {"/health", "/ready"}
    if not settings.metrics_require_key:
        paths.add("/metrics")
    return frozenset(paths)


def bearer_token(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The token of the one `Authorization: Bearer <token>` header; None for anything else.
    The scheme is case-insensitive (RFC 7235); two Authorization headers are ambiguous: refused."""
    values = [value for name, value in headers if name == b"authorization"]
    if len(values) != 1:
        return None
    scheme, _, token = values[0].decode("latin-1").strip().partition(" ")
    token = token.strip(" \t")
    # `token.split() != [token]`: whitespace anywhere in it (the same characters as str.isspace), without a
    # generator step per character.
    if scheme.lower() != "bearer" or not token or token.split() != [token]:
        return None
    return token


class ApiKeyAuth:
    """Sets `key_id`, `evaluation_key` and `trusted` on the request state, or answers 401.

    `trusted` (a valid key, or no keys on loopback) is what /ready shows its details to.
    """

    def __init__(self, app, keys: KeyStore, public: frozenset[str], open_is_trusted: bool):
        self.app = app
        self.keys = keys
        self.public = public
        self.open_is_trusted = open_is_trusted

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        state = scope.setdefault("state", {})
        if not self.keys.required:
            state.update(key_id=ANONYMOUS, evaluation_key=self.open_is_trusted, trusted=self.open_is_trusted)
            return await self.app(scope, receive, send)
        token = bearer_token(scope.get("headers") or [])
        entry = self.keys.lookup(token) if token is not None else None
        if entry is not None:
            state.update(key_id=entry.key_id, evaluation_key=entry.evaluation, trusted=True)
            return await self.app(scope, receive, send)
        if scope["type"] == "http" and scope.get("path") in self.public:
            state.update(key_id=ANONYMOUS, evaluation_key=False, trusted=False)
            return await self.app(scope, receive, send)
        if scope["type"] == "websocket":
            return await send({"type": "websocket.close", "code": 1008})
        missing = not any(name == b"authorization" for name, _ in scope.get("headers") or [])
        message = "missing API key: send `Authorization: Bearer <key>`" if missing else "invalid API key"
        await send_error(
            send, OpenAIError(401, message, code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})
        )
