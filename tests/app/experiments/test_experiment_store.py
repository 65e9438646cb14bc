"""The experiment store on a real SQLite file: versioned migrations, counters, the id map's retention,
idempotent feedback, and the write buffer's behaviour while the database cannot be written."""

from __future__ import annotations

import sqlite3

import pytest

from app.config.settings import Settings
from app.experiments.recorder import Recorder
from app.experiments.schema import LATEST
from app.experiments.service import experiment_dsn, state_dir
from app.experiments.store import SqlStore, StoreUnavailable, open_store
from moeprune.errors import UserError


def test_migrations_are_recorded_applied_once_and_a_newer_database_is_refused(tmp_path):
    store = open_store(tmp_path, None)
    assert store.sqlite_path == tmp_path / "experiments.sqlite3"
    assert store.migrate() == LATEST and store.migrate() == LATEST
    with sqlite3.connect(store.sqlite_path) as connection:
        assert [row[0] for row in connection.execute("SELECT version FROM schema_migrations")] == list(
            range(1, LATEST + 1)
        )
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        connection.execute("INSERT INTO schema_migrations VALUES (?, 0)", (LATEST + 1,))
    store.close()
    with pytest.raises(UserError, match="newer than this gateway"):
        open_store(tmp_path, None).migrate()


def test_counters_add_up_and_ids_expire_by_age_and_by_count(tmp_path):
    store = SqlStore(sqlite_path=tmp_path / "x.sqlite3")
    store.migrate()
    store.apply({("ab", "base", "requests"): 2}, [("id-1", "ab", "base", "k", 100.0)])
    store.apply(
        {("ab", "base", "requests"): 3, ("ab", "pruned", "errors"): 1},
        [
            ("id-2", "ab", "base", "k", 200.0),
            ("id-3", "ab", "pruned", "k", 300.0),
            ("id-1", "ab", "pruned", "k", 400.0),
        ],
    )  # a repeated id keeps its first arm
    assert store.counters() == {"ab": {"base": {"requests": 5.0}, "pruned": {"errors": 1.0}}}
    assert store.lookup("id-1") == ("ab", "base", "k", 100.0)
    assert store.add_feedback("id-2", "k", 1.0, "good", "", {("ab", "base", "feedback"): 1}, 250.0) is True
    assert store.add_feedback("id-2", "k", 0.0, "bad", "", {("ab", "base", "feedback"): 1}, 251.0) is False
    assert store.counters()["ab"]["base"]["feedback"] == 1.0
    assert store.prune(older_than=150.0, keep_at_most=10) == 1  # id-1 is past the window
    assert store.lookup("id-1") is None and store.lookup("id-2") is not None
    assert store.prune(older_than=0.0, keep_at_most=1) == 1  # only the newest id is kept
    assert store.lookup("id-2") is None and store.lookup("id-3") is not None
    with sqlite3.connect(store.sqlite_path) as connection:
        assert connection.execute("SELECT COUNT(*) FROM feedback").fetchone()[0] == 0  # gone with its completion


async def test_the_buffer_keeps_counts_drops_ids_beyond_its_bound_and_catches_up(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the state dir should be")
    store = SqlStore(sqlite_path=blocker / "experiments.sqlite3")
    drops, states = [], []
    recorder = Recorder(store, buffer_ids=3, on_drop=drops.append, on_state=states.append)
    for index in range(5):
        recorder.add("ab", "base", "requests")
        recorder.remember((f"id-{index}", "ab", "base", "k", float(index)))
    assert drops == [1, 1] and recorder.dropped == 2
    assert await recorder.flush() is False and states == [False]
    recorder.add("ab", "base", "requests")  # arrives while the database is down
    store.sqlite_path = tmp_path / "state" / "experiments.sqlite3"  # the database is back
    await recorder.call(store.migrate)
    assert await recorder.flush() is True and states == [False, True]
    assert store.counters() == {"ab": {"base": {"requests": 6.0}}}
    assert [store.lookup(f"id-{index}") is not None for index in range(5)] == [False, False, True, True, True]
    await recorder.close()


def test_state_dir_and_dsn_settings(tmp_path, monkeypatch):
    assert state_dir(Settings(state_dir=tmp_path / "s")) == tmp_path / "s"
    assert state_dir(Settings(work_dir=tmp_path)) == tmp_path / "state"
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert state_dir(Settings()) == tmp_path / "xdg" / "moeprune"
    (tmp_path / "dsn").write_text("postgresql://u:secret@db:5432/x\n")
    assert experiment_dsn(Settings(experiment_dsn_file=tmp_path / "dsn")) == "postgresql://u:secret@db:5432/x"
    assert experiment_dsn(Settings()) is None
    (tmp_path / "empty").write_text("")
    with pytest.raises(UserError, match="empty"):
        experiment_dsn(Settings(experiment_dsn_file=tmp_path / "empty"))
    with pytest.raises(UserError, match="PostgreSQL DSN"):
        open_store(tmp_path, "mysql-ish")


def test_an_unreachable_postgres_is_store_unavailable_without_the_password():
    pytest.importorskip("psycopg")
    store = SqlStore(dsn="postgresql://user:hunter2@127.0.0.1:1/db")
    with pytest.raises(StoreUnavailable) as caught:
        store.counters()
    assert "hunter2" not in str(caught.value)
