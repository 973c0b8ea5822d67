"""Schema migrations for the feedback database (the simonw/llm pattern).

Each migration is a function ``mNNN_description(db)`` registered, in order,
with ``@migration``. ``migrate(db)`` applies the ones not yet recorded in the
``_migrations`` table, each in its own transaction together with its record,
so re-running is a no-op and a failed migration leaves nothing half-applied.

Rules for editing this file:
- Never edit a migration that has shipped: databases in the wild already ran
  it and will never run it again. Fix mistakes with a new migration.
- To change the schema, append a new function at the END of the file,
  numbered one higher than the last (``m002_...``, ``m003_...``) and decorated
  with ``@migration``. The decorator refuses out-of-order numbers.
- Migrations use plain SQL rather than sqlite-utils' table helpers, so that
  what a migration does can't drift when the library is upgraded.
"""

from __future__ import annotations

import contextlib
import datetime
import re
import secrets
from collections.abc import Callable, Iterator

import sqlite_utils

MigrationFn = Callable[[sqlite_utils.Database], None]

MIGRATIONS: list[MigrationFn] = []

_NAME_RE = re.compile(r"^m(\d{3})_\w+$")


def migration(fn: MigrationFn) -> MigrationFn:
    """Register ``fn`` as the next migration; its number must follow the last one."""
    match = _NAME_RE.match(fn.__name__)
    if not match:
        raise ValueError(f"migration name {fn.__name__!r} must look like 'm001_description'")
    # Catch copy-paste numbering mistakes at import time instead of in production.
    expected = len(MIGRATIONS) + 1
    if int(match.group(1)) != expected:
        raise ValueError(f"migration {fn.__name__!r} should be numbered {expected:03d}")
    MIGRATIONS.append(fn)
    return fn


@contextlib.contextmanager
def _immediate(db: sqlite_utils.Database) -> Iterator[None]:
    """One write transaction, taken with BEGIN IMMEDIATE (or a savepoint if nested).

    IMMEDIATE takes the write lock up front, so two processes migrating the
    same file at once serialize instead of both deciding a migration is pending.
    """
    conn = db.conn
    if conn.in_transaction:
        name = f"migrate_{secrets.token_hex(8)}"
        conn.execute(f"SAVEPOINT {name}")
        try:
            yield
        except BaseException:
            # Some errors end the whole transaction, savepoint included.
            if conn.in_transaction:
                conn.execute(f"ROLLBACK TO {name}")
                conn.execute(f"RELEASE {name}")
            raise
        conn.execute(f"RELEASE {name}")
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def applied(db: sqlite_utils.Database) -> list[str]:
    """Names of the migrations recorded as applied, oldest first."""
    if not db["_migrations"].exists():
        return []
    return [row[0] for row in db.execute("SELECT name FROM _migrations ORDER BY rowid")]


def migrate(db: sqlite_utils.Database, upto: int | str | None = None) -> list[str]:
    """Apply pending migrations in order and return the names applied now.

    ``upto`` stops after that many migrations (an int) or after the named one;
    it exists so tests can build an "old" database and then upgrade it.
    """
    todo = list(MIGRATIONS)
    if isinstance(upto, int):
        todo = todo[:upto]
    elif isinstance(upto, str):
        names = [fn.__name__ for fn in todo]
        if upto not in names:
            raise ValueError(f"unknown migration {upto!r}")
        todo = todo[: names.index(upto) + 1]
    done: list[str] = []
    for fn in todo:
        with _immediate(db):
            db.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at TEXT)")
            # Re-checked inside the transaction: another process may have won.
            if db.execute("SELECT 1 FROM _migrations WHERE name = ?", [fn.__name__]).fetchone():
                continue
            fn(db)
            db.execute(
                "INSERT INTO _migrations (name, applied_at) VALUES (?, ?)",
                [
                    fn.__name__,
                    datetime.datetime.now(datetime.UTC).isoformat(timespec="microseconds"),
                ],
            )
        done.append(fn.__name__)
    return done


def _run(db: sqlite_utils.Database, *statements: str) -> None:
    for sql in statements:
        db.execute(sql)


# --------------------------------------------------------------------------
# Migrations. Append only; never edit one that has shipped.
# --------------------------------------------------------------------------


@migration
def m001_initial(db: sqlite_utils.Database) -> None:
    # CHECK constraints only on value sets that are fixed by the data model;
    # open-ended sets (message source, review kind/status) are validated in
    # Python so extending them doesn't require a table rebuild.
    _run(
        db,
        """
        CREATE TABLE users (
            id INTEGER PRIMARY KEY,
            name TEXT UNIQUE NOT NULL,
            password_hash TEXT,
            role TEXT NOT NULL CHECK (role IN ('user', 'admin')),
            created_at TEXT
        )
        """,
        """
        CREATE TABLE conversations (
            id TEXT PRIMARY KEY,
            owner TEXT NOT NULL,  -- rater id: username or 'anon:<session>'
            title TEXT,
            created_at TEXT
        )
        """,
        """
        CREATE TABLE messages (
            id TEXT PRIMARY KEY,            -- 'msg_<24 hex>'
            conversation_id TEXT,
            parent_id TEXT,                 -- previous message; regenerated siblings share it
            role TEXT CHECK (role IN ('user', 'assistant')),
            content TEXT,
            prompt_json TEXT,               -- chat messages exactly as sent to the model
            presets_json TEXT,              -- tone/format/safety/idk choices
            sampling_json TEXT,             -- temperature, top_p, max_tokens, stop, seed
            model_id TEXT,
            adapter_version TEXT,           -- NULL or 'base' for the base model
            prompt_tokens INTEGER,
            completion_tokens INTEGER,
            latency_ms REAL,
            finish_reason TEXT,
            source TEXT,                    -- 'ui' | 'api' | 'correction' | 'compare'
            corrects_id TEXT,               -- for a correction: the judged answer
            created_by TEXT,
            created_at TEXT
        )
        """,
        "CREATE INDEX idx_messages_conversation_id ON messages (conversation_id)",
        "CREATE INDEX idx_messages_parent_id ON messages (parent_id)",
        "CREATE INDEX idx_messages_adapter_version ON messages (adapter_version)",
        "CREATE INDEX idx_messages_created_at ON messages (created_at)",
        """
        CREATE TABLE ratings (
            id INTEGER PRIMARY KEY,
            message_id TEXT NOT NULL REFERENCES messages (id),
            rater TEXT NOT NULL,
            rating TEXT CHECK (rating IN ('up', 'down')),
            stars INTEGER CHECK (stars BETWEEN 1 AND 5),
            tags_json TEXT DEFAULT '[]',
            comment TEXT,
            correction_id TEXT,             -- message id of the correction row
            created_at TEXT
        )
        """,
        "CREATE INDEX idx_ratings_message_rater ON ratings (message_id, rater)",
        "CREATE INDEX idx_ratings_created_at ON ratings (created_at)",
        """
        CREATE TABLE comparisons (
            id INTEGER PRIMARY KEY,
            message_a TEXT,
            message_b TEXT,
            winner TEXT CHECK (winner IN ('a', 'b', 'tie', 'both_bad')),
            rater TEXT,
            created_at TEXT
        )
        """,
        """
        CREATE TABLE review_items (
            id TEXT PRIMARY KEY,            -- content hash of the item
            kind TEXT,                      -- 'sft' | 'dpo' | 'kto'
            payload_json TEXT,
            source_json TEXT,
            status TEXT,                    -- 'pending' | 'approved' | 'rejected'
            edited_payload_json TEXT,
            reason TEXT,
            decided_by TEXT,
            decided_at TEXT,
            created_at TEXT
        )
        """,
    )


# Next: @migration def m002_training_jobs(db) -> None: ...


@migration
def m002_training_jobs(db: sqlite_utils.Database) -> None:
    # Written by training/jobs.py: the server process (start/cancel/reap) and the job subprocess (its own
    # status, heartbeat and progress rows), each with its own connection and BEGIN IMMEDIATE.
    _run(
        db,
        """
        CREATE TABLE training_jobs (
            id TEXT PRIMARY KEY,
            status TEXT NOT NULL CHECK (status IN
                ('queued', 'running', 'succeeded', 'failed', 'cancelled', 'not_enough_data')),
            phase TEXT,                     -- prepare | sft | dpo | kto | save
            step INTEGER,                   -- counted across all stages of the job
            total_steps INTEGER,
            loss REAL,
            version TEXT,                   -- the adapter version it published
            error TEXT,
            pid INTEGER,
            heartbeat_at TEXT,
            created_at TEXT,
            started_at TEXT,
            finished_at TEXT,
            config_json TEXT,
            data_json TEXT                  -- datasets dir, parent version, counts, result
        )
        """,
        "CREATE INDEX idx_training_jobs_status ON training_jobs (status)",
        "CREATE INDEX idx_training_jobs_created_at ON training_jobs (created_at)",
        """
        CREATE TABLE job_progress (
            id INTEGER PRIMARY KEY,
            job_id TEXT NOT NULL REFERENCES training_jobs (id),
            phase TEXT,
            step INTEGER,
            total_steps INTEGER,
            loss REAL,
            reward_accuracy REAL,
            reward_margin REAL,
            tokens_per_s REAL,
            eta_s REAL,
            created_at TEXT
        )
        """,
        "CREATE INDEX idx_job_progress_job_id ON job_progress (job_id, id)",
    )


@migration
def m003_adapter_versions(db: sqlite_utils.Database) -> None:
    # Written by training/registry.py. A version row is immutable apart from its gate report and status;
    # `aliases` holds what serves now (live: NULL = the base model; canary: NULL = none), and every alias
    # change is also appended to `alias_history`.
    _run(
        db,
        """
        CREATE TABLE versions (
            id TEXT PRIMARY KEY,            -- 'v0003': the directory adapters/<id>/
            parent TEXT,                    -- the version it was trained from (NULL: the base)
            path TEXT NOT NULL,
            base_model_id TEXT,
            base_hash TEXT,
            dataset_hash TEXT,
            manifest_json TEXT,
            gate_json TEXT,                 -- the promotion gate's report
            gate_passed INTEGER,            -- NULL until evaluated
            status TEXT NOT NULL CHECK (status IN ('candidate', 'canary', 'live', 'retired', 'rejected')),
            created_at TEXT
        )
        """,
        "CREATE INDEX idx_versions_parent ON versions (parent)",
        """
        CREATE TABLE aliases (
            name TEXT PRIMARY KEY CHECK (name IN ('live', 'canary')),
            version TEXT,
            share REAL,                     -- canary: share of new conversations
            updated_at TEXT,
            updated_by TEXT
        )
        """,
        """
        CREATE TABLE alias_history (
            id INTEGER PRIMARY KEY,
            name TEXT,
            version TEXT,
            share REAL,
            at TEXT,
            by TEXT
        )
        """,
    )


@migration
def m004_origins_and_api_keys(db: sqlite_utils.Database) -> None:
    # Who sent a rating or comparison, as far as the server can tell: 'user:<account>' (a signed-in UI user or
    # an API caller with that account's key) or 'ip:<client address>' (anonymous). Curation caps each
    # origin's share of a dataset, so one client can't pose as many raters. NULL: recorded before this
    # migration (or by a direct Store caller); curation treats such a row's rater as its own origin.
    # users.api_key_hash: sha256 hex of the account's API key ('ak-...'); the key itself is never stored.
    _run(
        db,
        "ALTER TABLE ratings ADD COLUMN origin TEXT",
        "ALTER TABLE comparisons ADD COLUMN origin TEXT",
        "ALTER TABLE users ADD COLUMN api_key_hash TEXT",
        "ALTER TABLE users ADD COLUMN api_key_created_at TEXT",
        "CREATE UNIQUE INDEX idx_users_api_key_hash ON users (api_key_hash)",
    )
