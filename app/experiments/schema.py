"""The experiment database's schema, as numbered migrations applied in order (SQLite and PostgreSQL alike).

A database records the versions it has applied in `schema_migrations`; opening
it applies the missing ones in one transaction (under an advisory lock on
PostgreSQL, so two replicas starting together do not race). A database newer
than this code is refused rather than misread. The SQL is the common subset of
both: `DOUBLE PRECISION`, `TEXT`, `ON CONFLICT ... DO UPDATE`.

What is stored (bounded, and never any text of a request or an answer):
- `arm_counters`: per (experiment, arm, counter name) a running total; the
  names are a fixed set (requests, errors, client_errors, one per flag, latency histogram
  buckets, feedback sums), so the table's size depends on the configuration only.
- `completions`: completion id -> (experiment, arm, key digest, time), kept for
  the retention window (settings), for feedback to find its arm.
- `feedback`: one row per (completion id, key digest) that gave feedback: its
  value, label and tags (validated tokens, no free text); deleted with its completion.
- `arm_stops`: arms a guardrail stopped (cleared by a config reload).
- `live_fallbacks` (version 2): the (variant, domain) pairs whose live feedback tripped the
  reliability fallback (app/reliability/live_sync.py), so a restart or another replica keeps
  flagging them until `moeprune recertify` clears the row; one row per pair, no counts or text.
"""

from __future__ import annotations

MIGRATIONS: tuple[tuple[int, tuple[str, ...]], ...] = (
    (
        1,
        (
            """CREATE TABLE arm_counters (
               experiment TEXT NOT NULL, arm TEXT NOT NULL, name TEXT NOT NULL,
               value DOUBLE PRECISION NOT NULL, PRIMARY KEY (experiment, arm, name))""",
            """CREATE TABLE completions (
               id TEXT PRIMARY KEY, experiment TEXT NOT NULL, arm TEXT NOT NULL, key_hash TEXT NOT NULL,
               created_at DOUBLE PRECISION NOT NULL)""",
            "CREATE INDEX completions_by_age ON completions (created_at)",
            """CREATE TABLE feedback (
               id TEXT NOT NULL, key_hash TEXT NOT NULL, value DOUBLE PRECISION NOT NULL, label TEXT,
               tags TEXT NOT NULL, created_at DOUBLE PRECISION NOT NULL, PRIMARY KEY (id, key_hash))""",
            """CREATE TABLE arm_stops (
               experiment TEXT NOT NULL, arm TEXT NOT NULL, reason TEXT NOT NULL,
               stopped_at DOUBLE PRECISION NOT NULL, PRIMARY KEY (experiment, arm))""",
        ),
    ),
    (
        2,
        (
            """CREATE TABLE live_fallbacks (
               variant TEXT NOT NULL, domain TEXT NOT NULL, reason TEXT NOT NULL,
               since DOUBLE PRECISION NOT NULL, PRIMARY KEY (variant, domain))""",
        ),
    ),
)
LATEST = MIGRATIONS[-1][0]
CREATE_VERSIONS = (
    "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at DOUBLE PRECISION NOT NULL)"
)
