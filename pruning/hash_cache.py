"""Source-shard sha256s remembered between runs, so a second prune of the same source does not re-hash it.

A hash is reused only while the file is provably the same file, unchanged: the key is its resolved
path, size, modification time (ns), inode, device and status-change time (ctime: any write or
`touch` that restores the old mtime still moves it, and no user call can set it back). Any
difference is a miss and the file is hashed again.

The cache is one SQLite file (safe for several prunes at once) in the user's cache directory:
``$MOEPRUNE_CACHE_DIR``, else ``$XDG_CACHE_HOME/moeprune``, else ``~/.cache/moeprune``;
``MOEPRUNE_CACHE_DIR=off`` switches it off. A cache that cannot be read or written is a warning,
never a failed prune: the hashes are then computed as if it were empty.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)
CACHE_DIR_ENV = "MOEPRUNE_CACHE_DIR"
CACHE_NAME = "source-sha256.sqlite"
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS source_sha256 (path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER, "
    "inode INTEGER, device INTEGER, ctime_ns INTEGER, sha256 TEXT)"
)


@dataclass(frozen=True)
class FileIdentity:
    """What must be unchanged for a remembered hash to still describe the file."""

    path: str
    size: int
    mtime_ns: int
    inode: int
    device: int
    ctime_ns: int

    @classmethod
    def of(cls, path: str | Path) -> FileIdentity:
        resolved = Path(path).resolve()
        st = resolved.stat()
        return cls(str(resolved), st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev, st.st_ctime_ns)


def default_cache_dir() -> Path | None:
    """The cache directory from the environment, or None when switched off."""
    configured = os.environ.get(CACHE_DIR_ENV)
    if configured is not None:
        return None if configured.strip().lower() in ("", "off", "0", "none") else Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "moeprune"


class SourceHashCache:
    """sha256 by FileIdentity, in `directory`/source-sha256.sqlite; `directory=None` remembers nothing."""

    def __init__(self, directory: str | Path | None):
        self.path = Path(directory) / CACHE_NAME if directory is not None else None

    @classmethod
    def from_env(cls) -> SourceHashCache:
        return cls(default_cache_dir())

    def lookup(self, identity: FileIdentity) -> str | None:
        if self.path is None or not self.path.is_file():
            return None
        try:
            with self._connect() as db:
                row = db.execute(
                    "SELECT size, mtime_ns, inode, device, ctime_ns, sha256 FROM source_sha256 WHERE path = ?",
                    (identity.path,),
                ).fetchone()
        except sqlite3.Error as exc:
            log.warning("source hash cache %s unreadable (%s); hashing the source again", self.path, exc)
            return None
        if row is None or tuple(row[:5]) != (
            identity.size,
            identity.mtime_ns,
            identity.inode,
            identity.device,
            identity.ctime_ns,
        ):
            return None
        return row[5]

    def store(self, identity: FileIdentity, sha256: str) -> None:
        if self.path is None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._connect() as db:
                db.execute(
                    "INSERT OR REPLACE INTO source_sha256 VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        identity.path,
                        identity.size,
                        identity.mtime_ns,
                        identity.inode,
                        identity.device,
                        identity.ctime_ns,
                        sha256,
                    ),
                )
        except (sqlite3.Error, OSError) as exc:
            log.warning("source hash cache %s not written (%s); the next prune hashes the source again", self.path, exc)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30)
        try:
            with db:  # commits on success, rolls back on error
                db.execute(_SCHEMA)
                yield db
        finally:
            db.close()
