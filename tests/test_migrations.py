"""Tests for feedback.migrations: fresh install, idempotent re-run, upgrades."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlite_utils

from feedback import migrations
from feedback.migrations import MIGRATIONS, migrate
from feedback.store import Store

EXPECTED_COLUMNS = {
    "users": ["id", "name", "password_hash", "role", "created_at", "api_key_hash", "api_key_created_at"],
    "conversations": ["id", "owner", "title", "created_at"],
    "messages": [
        "id",
        "conversation_id",
        "parent_id",
        "role",
        "content",
        "prompt_json",
        "presets_json",
        "sampling_json",
        "model_id",
        "adapter_version",
        "prompt_tokens",
        "completion_tokens",
        "latency_ms",
        "finish_reason",
        "source",
        "corrects_id",
        "created_by",
        "created_at",
    ],
    "ratings": [
        "id",
        "message_id",
        "rater",
        "rating",
        "stars",
        "tags_json",
        "comment",
        "correction_id",
        "created_at",
        "origin",
    ],
    "comparisons": ["id", "message_a", "message_b", "winner", "rater", "created_at", "origin"],
    "review_items": [
        "id",
        "kind",
        "payload_json",
        "source_json",
        "status",
        "edited_payload_json",
        "reason",
        "decided_by",
        "decided_at",
        "created_at",
    ],
}


def _schema(db: sqlite_utils.Database) -> list[tuple[str, str]]:
    rows = db.execute("SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY name")
    return [(r[0], r[1]) for r in rows]


def _open(path: Path) -> sqlite_utils.Database:
    return sqlite_utils.Database(path, execute_plugins=False)


def test_fresh_db_migrates(tmp_path: Path) -> None:
    db = _open(tmp_path / "fresh.db")
    applied = migrate(db)
    assert applied == [fn.__name__ for fn in MIGRATIONS]
    assert migrations.applied(db) == applied
    for row in db["_migrations"].rows:
        assert row["applied_at"]
    assert set(EXPECTED_COLUMNS) <= set(db.table_names())


def test_rerun_is_noop(tmp_path: Path) -> None:
    db = _open(tmp_path / "twice.db")
    migrate(db)
    schema = _schema(db)
    rows = list(db["_migrations"].rows)
    assert migrate(db) == []
    assert migrate(db) == []
    assert list(db["_migrations"].rows) == rows
    assert _schema(db) == schema


def test_tables_have_expected_columns(tmp_path: Path) -> None:
    db = _open(tmp_path / "cols.db")
    migrate(db)
    for table, columns in EXPECTED_COLUMNS.items():
        assert [c.name for c in db[table].columns] == columns, table
    assert db.table("users").pks == ["id"]
    assert db.table("messages").pks == ["id"]
    indexed = {tuple(i.columns) for i in db.table("messages").indexes}
    for column in ("conversation_id", "parent_id", "adapter_version", "created_at"):
        assert (column,) in indexed
    assert {tuple(i.columns) for i in db.table("ratings").indexes} >= {
        ("message_id", "rater"),
        ("created_at",),
    }
    fks = db.table("ratings").foreign_keys
    assert [(fk.column, fk.other_table, fk.other_column) for fk in fks] == [("message_id", "messages", "id")]


@pytest.mark.parametrize("upto", range(len(MIGRATIONS)))
def test_old_db_is_upgraded(tmp_path: Path, upto: int) -> None:
    path = tmp_path / "old.db"
    db = _open(path)
    assert migrate(db, upto=upto) == [fn.__name__ for fn in MIGRATIONS[:upto]]
    db.close()
    # Opening a Store is how a deployed old database gets upgraded.
    Store(path).close()
    db = _open(path)
    assert migrations.applied(db) == [fn.__name__ for fn in MIGRATIONS]
    assert set(EXPECTED_COLUMNS) <= set(db.table_names())


def test_a_db_from_before_origins_keeps_its_feedback_with_unknown_origin(tmp_path: Path) -> None:
    """m004: ratings/comparisons gain `origin` (NULL for old rows: each rater is then its own origin),
    users gain an API key hash."""
    from feedback.curate import CurationConfig, curate
    from feedback.users import create_user, new_api_key, verify_api_key

    path = tmp_path / "before-origins.db"
    db = _open(path)
    migrate(db, upto="m003_adapter_versions")
    prompt = '[{"role": "user", "content": "2+2?"}]'
    for sql in (
        "INSERT INTO users (name, password_hash, role) VALUES ('old', NULL, 'user')",
        "INSERT INTO conversations (id, owner) VALUES ('c1', 'old')",
        "INSERT INTO messages (id, conversation_id, role, content, prompt_json, source, created_at)"
        f" VALUES ('m1', 'c1', 'assistant', '4', '{prompt}', 'ui', '2026-01-01T00:00:00+00:00')",
        "INSERT INTO messages (id, conversation_id, role, content, prompt_json, source, created_at)"
        f" VALUES ('m2', 'c1', 'assistant', 'four', '{prompt}', 'ui', '2026-01-01T00:00:01+00:00')",
        "INSERT INTO ratings (message_id, rater, rating, tags_json, created_at)"
        " VALUES ('m1', 'alice', 'up', '[]', '2026-01-01T00:00:02+00:00')",
        "INSERT INTO comparisons (message_a, message_b, winner, rater, created_at)"
        " VALUES ('m1', 'm2', 'a', 'bob', '2026-01-01T00:00:03+00:00')",
    ):
        db.execute(sql)
    db.conn.commit()
    assert "origin" not in db["ratings"].columns_dict
    db.close()
    with Store(path) as store:
        assert migrations.applied(store._db)[-1] == "m004_origins_and_api_keys"
        events = store.events()
        assert [r["origin"] for r in events["ratings"]] == [None]
        assert [c["origin"] for c in events["comparisons"]] == [None]
        result = curate(events, CurationConfig(heldout_fraction=0.0, rater_cap=1.0))
        assert [it["meta"]["origins"] for it in result.kto] == [["rater:alice"]]
        assert [it["meta"]["origins"] for it in result.dpo] == [["rater:bob"]]
        # New rows get theirs; old accounts can be given keys.
        store.add_rating(message_id="m2", rater="carol", rating="down", origin="ip:192.0.2.5")
        assert store.events()["ratings"][-1]["origin"] == "ip:192.0.2.5"
        key = new_api_key(store, "old")
        assert verify_api_key(store, key) == {"name": "old", "role": "user"}
        create_user(store, "new", "long enough")
        assert store.query("SELECT api_key_hash FROM users WHERE name = 'new'") == [{"api_key_hash": None}]


def test_appended_migration_upgrades_and_keeps_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def m999_add_column(db: sqlite_utils.Database) -> None:
        db.execute("ALTER TABLE users ADD COLUMN email TEXT")

    monkeypatch.setattr(migrations, "MIGRATIONS", [*MIGRATIONS, m999_add_column])
    db = _open(tmp_path / "upgrade.db")
    migrate(db, upto=len(MIGRATIONS))  # the "shipped" schema, without the new one
    db.execute("INSERT INTO users (name, role) VALUES ('alice', 'user')")  # committed by sqlite-utils
    assert "email" not in db["users"].columns_dict
    assert migrate(db) == ["m999_add_column"]
    assert "email" in db["users"].columns_dict
    assert [r["name"] for r in db["users"].rows] == ["alice"]
    assert migrate(db, upto="m999_add_column") == []


def test_failed_migration_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def m999_broken(db: sqlite_utils.Database) -> None:
        db.execute("CREATE TABLE half_done (x INTEGER)")
        raise RuntimeError("boom")

    monkeypatch.setattr(migrations, "MIGRATIONS", [*MIGRATIONS, m999_broken])
    db = _open(tmp_path / "broken.db")
    with pytest.raises(RuntimeError, match="boom"):
        migrate(db)
    assert "half_done" not in db.table_names()
    assert migrations.applied(db) == [fn.__name__ for fn in MIGRATIONS]


def test_decorator_rejects_bad_numbering() -> None:
    def m042_skipped_ahead(db: sqlite_utils.Database) -> None:
        pass

    def not_numbered(db: sqlite_utils.Database) -> None:
        pass

    before = list(MIGRATIONS)
    with pytest.raises(ValueError, match="numbered"):
        migrations.migration(m042_skipped_ahead)
    with pytest.raises(ValueError, match="m001_description"):
        migrations.migration(not_numbered)
    assert before == MIGRATIONS


def test_unknown_upto_name(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown migration"):
        migrate(_open(tmp_path / "x.db"), upto="m999_nope")
