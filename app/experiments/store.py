"""Where experiment state lives: SQLite (WAL, one file in the state dir) or PostgreSQL (a DSN, shared by replicas).

One class, `SqlStore`, speaks both through their DB-API drivers (`sqlite3`;
`psycopg`, imported only when a DSN is set); they differ only in the
placeholder, the connection and the migration lock. Every method is blocking
and is called from the gateway's one store thread (app/experiments/recorder.py),
never on the event loop. A failing database raises `StoreUnavailable`, whose
message never carries the DSN (it may hold a password); the next call reconnects.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from app.experiments.schema import CREATE_VERSIONS, LATEST, MIGRATIONS
from moeprune.errors import UserError

if TYPE_CHECKING:
    import psycopg

SQLITE_FILE = "experiments.sqlite3"
MIGRATION_LOCK = 7_151_517  # any constant: the advisory lock two PostgreSQL replicas take to migrate
CONNECT_TIMEOUT_S = 3
STATEMENT_TIMEOUT_MS = 5000
# A PostgreSQL connection idle this long is checked (SELECT 1) before use: a server that restarted
# meanwhile has closed it, and a read would otherwise fail once for nothing.
PING_AFTER_IDLE_S = 1.0

Counters = Mapping[tuple[str, str, str], float]  # (experiment, arm, counter name) -> amount to add
Completion = tuple[str, str, str, str, float]  # (id, experiment, arm, key digest, time)


class StoreUnavailable(Exception):
    """The database could not be reached or refused the statement (the message is safe to log)."""


class SqlStore:
    def __init__(self, *, sqlite_path: Path | None = None, dsn: str | None = None):
        if (sqlite_path is None) == (dsn is None):
            raise ValueError("give exactly one of sqlite_path or dsn")
        self.sqlite_path, self._dsn = sqlite_path, dsn
        self.postgres = dsn is not None
        self.where = "postgresql" if self.postgres else str(sqlite_path)
        self._connection: sqlite3.Connection | psycopg.Connection | None = None
        self._used_at = 0.0
        self._lock = threading.Lock()
        if self.postgres:
            try:
                import psycopg  # noqa: F401 - only PostgreSQL installs need it
            except ImportError:
                raise UserError(
                    "MOEPRUNE_EXPERIMENT_DSN is set but the PostgreSQL driver is missing: pip install 'psycopg[binary]'"
                ) from None

    # -- connection -----------------------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection | psycopg.Connection:
        if self._dsn is not None:  # self.postgres
            import psycopg

            return psycopg.connect(
                self._dsn,
                autocommit=True,
                connect_timeout=CONNECT_TIMEOUT_S,
                options=f"-c statement_timeout={STATEMENT_TIMEOUT_MS}",
            )
        assert self.sqlite_path is not None  # __init__: exactly one of sqlite_path / dsn
        self.sqlite_path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(
            self.sqlite_path, timeout=STATEMENT_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
        )
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
        return connection

    @contextlib.contextmanager
    def _transaction(self) -> Iterator:
        """A cursor inside one transaction; any database error becomes StoreUnavailable (and a reconnect)."""
        with self._lock:
            try:
                if (
                    self._connection is not None
                    and self.postgres
                    and time.monotonic() - self._used_at > PING_AFTER_IDLE_S
                    and not self._alive(self._connection)
                ):
                    self._reset()
                if self._connection is None:
                    self._connection = self._connect()
                self._used_at = time.monotonic()
                connection = self._connection
                if not isinstance(connection, sqlite3.Connection):  # PostgreSQL (self.postgres)
                    with connection.transaction(), connection.cursor() as pg_cursor:
                        yield _Cursor(pg_cursor, postgres=True)
                    return
                cursor = connection.cursor()
                cursor.execute("BEGIN IMMEDIATE")
                try:
                    yield _Cursor(cursor, postgres=False)
                except BaseException:
                    cursor.execute("ROLLBACK")
                    raise
                cursor.execute("COMMIT")
            except (sqlite3.Error, OSError) as exc:
                self._reset()
                raise StoreUnavailable(f"experiment database {self.where}: {exc}") from None
            except Exception as exc:
                if not _is_driver_error(exc):
                    raise
                self._reset()
                # psycopg's messages name host and port at most, never the password; keep the first line.
                raise StoreUnavailable(
                    f"experiment database ({self.where}): "
                    f"{str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}"
                ) from None

    @staticmethod
    def _alive(connection: sqlite3.Connection | psycopg.Connection) -> bool:
        try:
            connection.execute("SELECT 1")
            return True
        except Exception:
            return False

    def _reset(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(Exception):
                self._connection.close()
        self._connection = None

    def close(self) -> None:
        with self._lock:
            self._reset()

    # -- schema ---------------------------------------------------------------------------------------
    def migrate(self) -> int:
        """Apply the missing migrations; the schema version now. A newer database is refused."""
        with self._transaction() as cursor:
            if self.postgres:
                cursor.execute("SELECT pg_advisory_xact_lock(?)", (MIGRATION_LOCK,))
            cursor.execute(CREATE_VERSIONS)
            cursor.execute("SELECT version FROM schema_migrations")
            applied = {row[0] for row in cursor.fetchall()}
            if applied and max(applied) > LATEST:
                raise UserError(
                    f"the experiment database ({self.where}) has schema version {max(applied)}, newer "
                    f"than this gateway's {LATEST}: upgrade the gateway, or point it at another database"
                )
            for version, statements in MIGRATIONS:
                if version in applied:
                    continue
                for statement in statements:
                    cursor.execute(statement)
                cursor.execute(
                    "INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)", (version, time.time())
                )
        return LATEST

    # -- writes ---------------------------------------------------------------------------------------
    def apply(self, counters: Counters, completions: list[Completion]) -> None:
        """Add counter amounts and remember completion ids, all in one transaction."""
        with self._transaction() as cursor:
            _add_counters(cursor, counters)
            if completions:
                cursor.executemany(
                    "INSERT INTO completions (id, experiment, arm, key_hash, created_at) "
                    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
                    completions,
                )

    def add_feedback(
        self,
        completion_id: str,
        key_hash: str,
        value: float,
        label: str | None,
        tags: str,
        counters: Counters,
        now: float,
    ) -> bool:
        """Record one feedback and its counters, unless this (id, key) already gave one; True when recorded."""
        with self._transaction() as cursor:
            cursor.execute(
                "INSERT INTO feedback (id, key_hash, value, label, tags, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id, key_hash) DO NOTHING",
                (completion_id, key_hash, value, label, tags, now),
            )
            if cursor.rowcount != 1:
                return False
            _add_counters(cursor, counters)
            return True

    def prune(self, older_than: float, keep_at_most: int) -> int:
        """Forget completions (and their feedback) past the retention window or beyond the newest N."""
        with self._transaction() as cursor:
            cursor.execute(
                "SELECT created_at FROM completions ORDER BY created_at DESC LIMIT 1 OFFSET ?", (keep_at_most,)
            )
            row = cursor.fetchone()
            cutoff = max(older_than, row[0]) if row else older_than
            cursor.execute(
                "DELETE FROM completions WHERE created_at <= ?"
                if row
                else "DELETE FROM completions WHERE created_at < ?",
                (cutoff,),
            )
            removed = cursor.rowcount
            cursor.execute(
                "DELETE FROM feedback WHERE created_at < ? OR id NOT IN (SELECT id FROM completions)", (older_than,)
            )
            return removed

    def stop_arm(self, experiment: str, arm: str, reason: str, now: float) -> bool:
        with self._transaction() as cursor:
            cursor.execute(
                "INSERT INTO arm_stops (experiment, arm, reason, stopped_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (experiment, arm) DO NOTHING",
                (experiment, arm, reason, now),
            )
            return cursor.rowcount == 1

    def clear_stops(self) -> int:
        with self._transaction() as cursor:
            cursor.execute("DELETE FROM arm_stops")
            return cursor.rowcount

    def write_fallbacks(self, changes: Mapping[tuple[str, str], tuple[str, float] | None]) -> None:
        """Set (reason, since) or, for None, clear the live fallback of each (variant, domain), in one transaction."""
        with self._transaction() as cursor:
            for (variant, domain), held in changes.items():
                if held is None:
                    cursor.execute("DELETE FROM live_fallbacks WHERE variant = ? AND domain = ?", (variant, domain))
                else:
                    cursor.execute(
                        "INSERT INTO live_fallbacks (variant, domain, reason, since) VALUES (?, ?, ?, ?) "
                        "ON CONFLICT (variant, domain) DO NOTHING",
                        (variant, domain, *held),
                    )

    # -- reads ----------------------------------------------------------------------------------------
    def fallbacks(self) -> dict[tuple[str, str], str]:
        """(variant, domain) -> why its live fallback is held, for every pair any replica tripped."""
        with self._transaction() as cursor:
            cursor.execute("SELECT variant, domain, reason FROM live_fallbacks")
            return {(variant, domain): reason for variant, domain, reason in cursor.fetchall()}

    def counters(self) -> dict[str, dict[str, dict[str, float]]]:
        """experiment -> arm -> counter name -> total."""
        with self._transaction() as cursor:
            cursor.execute("SELECT experiment, arm, name, value FROM arm_counters")
            rows = cursor.fetchall()
        totals: dict[str, dict[str, dict[str, float]]] = {}
        for experiment, arm, name, value in rows:
            totals.setdefault(experiment, {}).setdefault(arm, {})[name] = value
        return totals

    def stops(self) -> dict[tuple[str, str], str]:
        with self._transaction() as cursor:
            cursor.execute("SELECT experiment, arm, reason FROM arm_stops")
            return {(experiment, arm): reason for experiment, arm, reason in cursor.fetchall()}

    def lookup(self, completion_id: str) -> tuple[str, str, str, float] | None:
        """(experiment, arm, key digest, created_at) of a remembered completion, or None."""
        with self._transaction() as cursor:
            cursor.execute(
                "SELECT experiment, arm, key_hash, created_at FROM completions WHERE id = ?", (completion_id,)
            )
            row = cursor.fetchone()
        return tuple(row) if row else None


def _add_counters(cursor, counters: Counters) -> None:
    # Sorted: every replica takes the rows' locks in one order. In each buffer's own order (the order its
    # requests met them) two replicas upserting the same rows deadlock, and PostgreSQL aborts one of them.
    rows = [(*key, float(amount)) for key, amount in sorted(counters.items()) if amount]
    if rows:
        cursor.executemany(
            "INSERT INTO arm_counters (experiment, arm, name, value) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (experiment, arm, name) DO UPDATE SET value = arm_counters.value + "
            "excluded.value",
            rows,
        )


class _Cursor:
    """A DB-API cursor that takes `?` placeholders on both databases."""

    def __init__(self, cursor, postgres: bool):
        self._cursor, self._postgres = cursor, postgres

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self._postgres else sql

    def execute(self, sql: str, params: tuple = ()) -> None:
        self._cursor.execute(self._sql(sql), params)

    def executemany(self, sql: str, rows: list) -> None:
        self._cursor.executemany(self._sql(sql), rows)

    def fetchall(self) -> list:
        return self._cursor.fetchall()

    def fetchone(self):
        return self._cursor.fetchone()

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount


def _is_driver_error(exc: Exception) -> bool:
    try:
        import psycopg
    except ImportError:
        return False
    return isinstance(exc, psycopg.Error)


def open_store(state_dir: Path, dsn: str | None) -> SqlStore:
    """The configured store, not yet connected (the first use connects; `migrate` is called at start)."""
    if dsn:
        if not dsn.startswith(("postgresql://", "postgres://")) and "=" not in dsn:
            raise UserError(
                "MOEPRUNE_EXPERIMENT_DSN: expected a PostgreSQL DSN such as postgresql://user:password@host:5432/dbname"
            )
        return SqlStore(dsn=dsn)
    return SqlStore(sqlite_path=Path(state_dir) / SQLITE_FILE)
