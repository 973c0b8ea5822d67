"""Tests for feedback.store and feedback.users on real SQLite files."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import sqlite_utils

from feedback import users
from feedback.store import (
    ALLOWED_TAGS,
    MAX_LIST_LIMIT,
    NotFoundError,
    Store,
    StoreClosedError,
    ValidationError,
)

PROMPT = [
    {"role": "system", "content": "You are terse. Réponds en français si demandé."},
    {"role": "user", "content": "What is 2+2?"},
]
SAMPLING = {"temperature": 0.7, "top_p": 0.9, "max_tokens": 256, "stop": ["\n\n"], "seed": 7}
PRESETS = {"tone": "friendly", "format": "plain", "safety": "standard", "idk": True}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "feedback.db")
    yield s
    s.close()


def _thread(store: Store, adapter_version: str | None = "v1") -> dict[str, str]:
    """A conversation with one user turn and one assistant answer."""
    conv = store.create_conversation("alice", title="math")
    user = store.record_message(conversation_id=conv, role="user", content="What is 2+2?")
    answer = store.record_message(
        conversation_id=conv,
        role="assistant",
        content="4",
        parent_id=user,
        prompt=PROMPT,
        presets=PRESETS,
        sampling=SAMPLING,
        model_id="tiny-llm",
        adapter_version=adapter_version,
        prompt_tokens=12,
        completion_tokens=1,
        latency_ms=42.5,
        finish_reason="stop",
    )
    return {"conv": conv, "user": user, "answer": answer}


# -- messages ----------------------------------------------------------------


def test_message_round_trip(store: Store) -> None:
    t = _thread(store)
    msg = store.get_message(t["answer"])
    assert msg is not None
    assert t["answer"].startswith("msg_") and len(t["answer"]) == 4 + 24
    assert msg["prompt"] == PROMPT
    assert msg["presets"] == PRESETS
    assert msg["sampling"] == SAMPLING
    assert msg["parent_id"] == t["user"]
    assert msg["conversation_id"] == t["conv"]
    assert (msg["role"], msg["content"], msg["source"]) == ("assistant", "4", "ui")
    assert (msg["prompt_tokens"], msg["completion_tokens"], msg["latency_ms"]) == (12, 1, 42.5)
    assert msg["adapter_version"] == "v1" and msg["finish_reason"] == "stop"
    user = store.get_message(t["user"])
    assert user is not None and user["prompt"] is None
    assert store.get_message("msg_nope") is None


def test_regenerated_answers_are_siblings(store: Store) -> None:
    t = _thread(store)
    again = store.record_message(
        conversation_id=t["conv"], role="assistant", content="four", parent_id=t["user"]
    )
    siblings = store.query("SELECT id FROM messages WHERE parent_id = ? ORDER BY created_at", [t["user"]])
    assert [r["id"] for r in siblings] == [t["answer"], again]


def test_record_message_validation(store: Store) -> None:
    t = _thread(store)
    ok: dict[str, Any] = {"conversation_id": t["conv"], "role": "assistant", "content": "x"}
    with pytest.raises(ValidationError, match="role"):
        store.record_message(**{**ok, "role": "system"})
    with pytest.raises(ValidationError, match="source"):
        store.record_message(**ok, source="carrier-pigeon")
    with pytest.raises(ValidationError, match="prompt"):
        store.record_message(**ok, prompt="not a list")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="prompt_tokens"):
        store.record_message(**ok, prompt_tokens=-1)
    with pytest.raises(ValidationError, match="already exists"):
        store.record_message(**ok, id=t["answer"])
    with pytest.raises(NotFoundError, match="conversation"):
        store.record_message(**{**ok, "conversation_id": "conv_missing"})
    with pytest.raises(NotFoundError, match="parent"):
        store.record_message(**ok, parent_id="msg_missing")
    with pytest.raises(ValidationError, match="already exists"):
        store.create_conversation("bob", id=t["conv"])
    with pytest.raises(ValidationError, match="owner"):
        store.create_conversation("")


# -- ratings -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"rating": "meh"}, "rating must be one of"),
        ({"stars": 0}, "stars"),
        ({"stars": 6}, "stars"),
        ({"stars": True}, "stars"),
        ({"stars": 2.5}, "stars"),
        ({"tags": ["rude"]}, "unknown tags"),
        ({"tags": "hallucination"}, "not a string"),
        ({"comment": "x" * 4001}, "comment is too long"),
        ({"correction": "x" * 16001}, "correction is too long"),
        ({}, "at least one of"),
        ({"comment": "   "}, "at least one of"),
        ({"rating": "up", "rater": ""}, "rater"),
    ],
)
def test_rating_validation(store: Store, kwargs: dict[str, Any], match: str) -> None:
    t = _thread(store)
    args: dict[str, Any] = {"message_id": t["answer"], "rater": "bob", **kwargs}
    with pytest.raises(ValidationError, match=match):
        store.add_rating(**args)
    assert store.count_ratings() == 0


def test_rating_limits_are_inclusive(store: Store) -> None:
    t = _thread(store)
    store.add_rating(
        message_id=t["answer"],
        rater="bob",
        stars=5,
        tags=list(ALLOWED_TAGS),
        comment="x" * 4000,
        correction="y" * 16000,
    )
    store.add_rating(message_id=t["answer"], rater="bob", stars=1)
    assert store.count_ratings() == 2


def test_rating_unknown_or_user_message(store: Store) -> None:
    t = _thread(store)
    with pytest.raises(NotFoundError, match="not found"):
        store.add_rating(message_id="msg_missing", rater="bob", rating="up")
    with pytest.raises(NotFoundError, match="not an assistant message"):
        store.add_rating(message_id=t["user"], rater="bob", rating="up")
    assert store.count_ratings() == 0


def test_newest_rating_is_current_and_history_kept(store: Store) -> None:
    t = _thread(store)
    first = store.add_rating(message_id=t["answer"], rater="bob", rating="down", tags=["wrong_tone"])
    second = store.add_rating(message_id=t["answer"], rater="bob", rating="up", stars=4)
    store.add_rating(message_id=t["answer"], rater="carol", rating="down")
    current = store.current_rating(t["answer"], "bob")
    assert current is not None
    assert (current["id"], current["rating"], current["stars"], current["tags"]) == (
        second,
        "up",
        4,
        [],
    )
    history = store.list_feedback(rater="bob")
    assert [r["id"] for r in history] == [second, first]
    assert history[1]["tags"] == ["wrong_tone"]
    assert store.current_rating(t["answer"], "nobody") is None


def test_correction_creates_new_message(store: Store) -> None:
    t = _thread(store)
    before = store.get_message(t["answer"])
    rating_id = store.add_rating(
        message_id=t["answer"],
        rater="bob",
        rating="down",
        tags=["hallucination", "hallucination"],
        correction="2 + 2 = 4.",
    )
    rating = store.current_rating(t["answer"], "bob")
    assert rating is not None and rating["id"] == rating_id
    assert rating["tags"] == ["hallucination"]
    corr = store.get_message(rating["correction_id"])
    assert corr is not None
    assert corr["id"] != t["answer"]
    assert corr["source"] == "correction" and corr["role"] == "assistant"
    assert corr["corrects_id"] == t["answer"]
    assert corr["content"] == "2 + 2 = 4."
    assert corr["parent_id"] == t["user"] and corr["conversation_id"] == t["conv"]
    assert corr["prompt"] == PROMPT
    assert corr["created_by"] == "bob"
    assert store.get_message(t["answer"]) == before  # the judged answer is untouched
    assert store.list_feedback()[0]["correction"] == "2 + 2 = 4."


def test_failed_rating_with_correction_leaves_no_message(store: Store) -> None:
    t = _thread(store)
    with pytest.raises(NotFoundError):
        store.add_rating(message_id=t["user"], rater="bob", correction="nope")
    rows = store.query("SELECT count(*) AS n FROM messages WHERE source = 'correction'")
    assert rows[0]["n"] == 0


# -- comparisons ---------------------------------------------------------------


def test_comparison(store: Store) -> None:
    t = _thread(store)
    b = store.record_message(conversation_id=t["conv"], role="assistant", content="four", parent_id=t["user"])
    cid = store.add_comparison(message_a=t["answer"], message_b=b, winner="a", rater="bob")
    assert store.query("SELECT * FROM comparisons")[0]["id"] == cid
    with pytest.raises(ValidationError, match="winner"):
        store.add_comparison(message_a=t["answer"], message_b=b, winner="c", rater="bob")
    with pytest.raises(ValidationError, match="different"):
        store.add_comparison(message_a=b, message_b=b, winner="a", rater="bob")
    with pytest.raises(ValidationError, match="rater"):
        store.add_comparison(message_a=t["answer"], message_b=b, winner="a", rater=" ")
    with pytest.raises(NotFoundError, match="not found"):
        store.add_comparison(message_a=t["answer"], message_b="msg_x", winner="a", rater="bob")
    with pytest.raises(NotFoundError, match="assistant"):
        store.add_comparison(message_a=t["user"], message_b=b, winner="tie", rater="bob")
    assert len(store.query("SELECT * FROM comparisons")) == 1


def test_ratings_and_comparisons_record_their_origin(store: Store) -> None:
    t = _thread(store)
    b = store.record_message(conversation_id=t["conv"], role="assistant", content="four", parent_id=t["user"])
    store.add_rating(message_id=t["answer"], rater="alice", rating="up", origin="user:alice")
    store.add_rating(message_id=b, rater="bob", rating="down")  # a direct caller: origin unknown
    store.add_comparison(message_a=t["answer"], message_b=b, winner="a", rater="x", origin="ip:192.0.2.1")
    events = store.events()
    assert {r["rater"]: r["origin"] for r in events["ratings"]} == {"alice": "user:alice", "bob": None}
    assert events["comparisons"][0]["origin"] == "ip:192.0.2.1"
    assert store.current_rating(t["answer"], "alice")["origin"] == "user:alice"  # type: ignore[index]
    assert store.feedback_counts()["origins"] == 1
    for bad in ("", "no-colon", "ip:", ":x", "user:" + "x" * 300):
        with pytest.raises(ValidationError, match="origin"):
            store.add_rating(message_id=b, rater="bob", rating="up", origin=bad)
        with pytest.raises(ValidationError, match="origin"):
            store.add_comparison(message_a=t["answer"], message_b=b, winner="a", rater="x", origin=bad)


# -- reads -------------------------------------------------------------------


def test_list_feedback_filters_and_paging(store: Store) -> None:
    base = _thread(store, adapter_version=None)
    v1 = _thread(store, adapter_version="v1")
    r1 = store.add_rating(message_id=base["answer"], rater="bob", rating="up")
    r2 = store.add_rating(message_id=base["answer"], rater="carol", rating="down", tags=["unsafe"])
    time.sleep(0.002)
    since = store.query("SELECT created_at FROM ratings WHERE id = ?", [r2])[0]["created_at"]
    r3 = store.add_rating(message_id=v1["answer"], rater="bob", rating="down", tags=["unsafe", "other"])
    r4 = store.add_rating(message_id=v1["answer"], rater="dave", stars=3, comment="meh")

    def ids(**kw: Any) -> list[int]:
        return [r["id"] for r in store.list_feedback(**kw)]

    assert ids() == [r4, r3, r2, r1]
    assert ids(rater="bob") == [r3, r1]
    assert ids(tag="unsafe") == [r3, r2]
    assert ids(tag="other") == [r3]
    assert ids(rating="down") == [r3, r2]
    assert ids(adapter_version="base") == [r2, r1]
    assert ids(adapter_version="v1") == [r4, r3]
    assert ids(since=since) == [r4, r3, r2]
    assert ids(rater="bob", rating="down", adapter_version="v1") == [r3]
    assert ids(limit=2) == [r4, r3]
    assert ids(limit=2, offset=2) == [r2, r1]
    assert ids(limit=2, offset=4) == []
    row = store.list_feedback(rater="dave")[0]
    assert (row["content"], row["comment"], row["stars"], row["adapter_version"]) == (
        "4",
        "meh",
        3,
        "v1",
    )
    with pytest.raises(ValidationError):
        store.list_feedback(tag="rude")


def test_list_feedback_limit_is_capped(store: Store) -> None:
    t = _thread(store)

    def bulk(db: sqlite_utils.Database) -> None:
        for i in range(MAX_LIST_LIMIT + 10):
            db.execute(
                "INSERT INTO ratings (message_id, rater, rating, tags_json) VALUES (?, ?, 'up', '[]')",
                [t["answer"], f"r{i}"],
            )

    store.write(bulk)
    assert len(store.list_feedback(limit=10_000)) == MAX_LIST_LIMIT


def test_counts_and_daily_rate(store: Store) -> None:
    base = _thread(store, adapter_version="base")
    v1 = _thread(store, adapter_version="v1")
    store.add_rating(message_id=base["answer"], rater="bob", rating="down", tags=["unsafe"])
    store.add_rating(message_id=base["answer"], rater="bob", rating="up", stars=5)  # replaces
    store.add_rating(message_id=v1["answer"], rater="bob", rating="down", tags=["unsafe", "other"])
    store.add_rating(message_id=v1["answer"], rater="carol", rating="up", correction="Four.")
    counts = store.feedback_counts()
    assert counts["ratings"] == 4
    assert counts["current_ratings"] == 3
    assert counts["rated_messages"] == 2 and counts["raters"] == 2
    assert counts["corrections"] == 1 and counts["comparisons"] == 0
    assert counts["by_rating"] == {"up": 2, "down": 1}
    assert counts["by_tag"]["unsafe"] == 1 and counts["by_tag"]["other"] == 1
    assert set(counts["by_tag"]) == set(ALLOWED_TAGS)
    assert counts["by_stars"][5] == 1
    rows = store.daily_up_rate()
    assert [(r["adapter_version"], r["up"], r["down"], r["rate"]) for r in rows] == [
        ("base", 1, 0, 1.0),
        ("v1", 1, 1, 0.5),
    ]
    assert len(rows[0]["day"]) == 10


def test_events(store: Store) -> None:
    t = _thread(store)
    b = store.record_message(conversation_id=t["conv"], role="assistant", content="four", parent_id=t["user"])
    _thread(store)  # an unrated answer: not an event
    store.add_rating(message_id=t["answer"], rater="bob", rating="down", tags=["wrong_format"])
    store.add_rating(message_id=t["answer"], rater="bob", rating="up", correction="4.")
    store.add_comparison(message_a=t["answer"], message_b=b, winner="b", rater="carol")
    ev = store.events()
    corr = store.current_rating(t["answer"], "bob")
    assert corr is not None
    assert [m["id"] for m in ev["messages"]] == [t["answer"], b, corr["correction_id"]]
    assert all(m["role"] == "assistant" for m in ev["messages"])
    assert ev["messages"][0]["prompt"] == PROMPT
    assert ev["messages"][0]["sampling"] == SAMPLING
    assert [(r["rating"], r["tags"], r["current"]) for r in ev["ratings"]] == [
        ("down", ["wrong_format"], False),
        ("up", [], True),
    ]
    assert [(c["message_a"], c["message_b"], c["winner"]) for c in ev["comparisons"]] == [
        (t["answer"], b, "b")
    ]


def test_reads_from_other_threads_see_committed_writes(store: Store) -> None:
    t = _thread(store)
    with ThreadPoolExecutor(4) as pool:
        found = list(pool.map(lambda _: store.get_message(t["answer"]), range(8)))
    assert all(m is not None and m["content"] == "4" for m in found)
    with pytest.raises(Exception, match="readonly"):
        store.query("INSERT INTO users (name, role) VALUES ('x', 'user') RETURNING id")


# -- the writer ----------------------------------------------------------------


def test_concurrent_ratings(store: Store) -> None:
    t = _thread(store)
    n_threads, per_thread = 16, 200

    def rate(worker: int) -> list[int]:
        return [
            store.add_rating(
                message_id=t["answer"],
                rater=f"rater{worker}",
                rating="up" if i % 2 else "down",
                comment=str(i),
            )
            for i in range(per_thread)
        ]

    start = time.perf_counter()
    with ThreadPoolExecutor(n_threads) as pool:
        ids = [i for chunk in pool.map(rate, range(n_threads)) for i in chunk]
    elapsed = time.perf_counter() - start
    print(f"\n{n_threads * per_thread} concurrent add_rating calls: {elapsed:.2f}s {store.stats()}")

    total = n_threads * per_thread
    assert len(ids) == total and len(set(ids)) == total
    assert store.count_ratings() == total
    pairs = store.query("SELECT rater, comment, count(*) AS n FROM ratings GROUP BY rater, comment")
    assert len(pairs) == total and all(p["n"] == 1 for p in pairs)
    assert {(p["rater"], int(p["comment"])) for p in pairs} == {
        (f"rater{w}", i) for w in range(n_threads) for i in range(per_thread)
    }
    assert store.stats()["transactions"] < total  # writes really were grouped
    assert store.integrity_check() == "ok"
    assert elapsed < 20


def _queue_behind_gate(store: Store, fns: list[Any]) -> list[Future[Any]]:
    """Queue fns while the writer is held, so they are committed as one group."""
    gate = threading.Event()
    blocker = store.submit(lambda db: gate.wait(10))
    futures = [store.submit(fn) for fn in fns]
    gate.set()
    assert blocker.result() is True
    for f in futures:
        f.exception(timeout=10)
    return futures


def _insert_rating(message_id: str, rater: str, stars: int = 3) -> Any:
    def fn(db: sqlite_utils.Database) -> int:
        cur = db.execute(
            "INSERT INTO ratings (message_id, rater, stars, tags_json) VALUES (?, ?, ?, '[]')",
            [message_id, rater, stars],
        )
        return int(cur.lastrowid or 0)

    return fn


def test_failing_write_in_group_does_not_lose_others(store: Store) -> None:
    t = _thread(store)
    before = store.stats()
    fns = []
    for i in range(30):
        if i % 5 == 0:
            fns.append(_insert_rating(t["answer"], f"bad{i}", stars=9))  # CHECK fails
        elif i % 7 == 0:
            fns.append(_insert_rating("msg_missing", f"bad{i}"))  # foreign key fails
        else:
            fns.append(_insert_rating(t["answer"], f"good{i}"))
    futures = _queue_behind_gate(store, fns)
    good = [f for f in futures if f.exception() is None]
    bad = [f for f in futures if f.exception() is not None]
    assert len(bad) == 6 + 4  # i % 5 == 0, then i in (7, 14, 21, 28)
    assert all("constraint" in str(f.exception()).lower() for f in bad)
    assert store.count_ratings() == len(good) == 20
    assert sorted(f.result() for f in good) == [
        r["id"] for r in store.query("SELECT id FROM ratings ORDER BY id")
    ]
    after = store.stats()
    assert after["transactions"] - before["transactions"] <= 2  # blocker + one group
    assert after["retried_groups"] == before["retried_groups"]


def test_write_that_kills_the_transaction_is_retried_alone(store: Store) -> None:
    t = _thread(store)

    def rollback_everything(db: sqlite_utils.Database) -> None:
        db.conn.execute("ROLLBACK")  # like SQLITE_FULL: the whole transaction is gone
        raise OSError("disk trouble")

    fns = [_insert_rating(t["answer"], f"good{i}") for i in range(5)]
    fns.insert(2, rollback_everything)
    futures = _queue_behind_gate(store, fns)
    assert isinstance(futures[2].exception(), OSError)
    assert [f.exception() for f in futures[:2] + futures[3:]] == [None] * 5
    assert store.count_ratings() == 5
    assert store.stats()["retried_groups"] == 1


def test_domain_errors_under_concurrency(store: Store) -> None:
    t = _thread(store)

    def rate(worker: int) -> tuple[int, int]:
        ok = missing = 0
        for i in range(40):
            try:
                store.add_rating(
                    message_id="msg_missing" if i % 4 == 0 else t["answer"],
                    rater=f"w{worker}",
                    rating="up",
                    correction=f"fix {worker}/{i}" if i % 3 == 0 else None,
                )
                ok += 1
            except NotFoundError:
                missing += 1
        return ok, missing

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(rate, range(8)))
    assert all(r == (30, 10) for r in results)
    assert store.count_ratings() == 240
    # i % 3 == 0 and i % 4 != 0: 10 of 40 per worker carried a correction
    corrections = store.query("SELECT count(*) AS n FROM messages WHERE source = 'correction'")
    assert corrections[0]["n"] == 80


def test_nested_write_runs_in_same_transaction(store: Store) -> None:
    t = _thread(store)

    def outer(db: sqlite_utils.Database) -> int:
        return store.add_rating(message_id=t["answer"], rater="bob", rating="up")

    assert store.write(outer) > 0
    assert store.count_ratings() == 1


def test_close_then_reopen_keeps_data(tmp_path: Path) -> None:
    path = tmp_path / "persist.db"
    store = Store(path)
    t = _thread(store)
    futures = [store.submit(_insert_rating(t["answer"], f"r{i}")) for i in range(50)]
    store.close()  # drains what is queued
    assert all(f.done() and f.exception() is None for f in futures)
    store.close()  # idempotent
    with pytest.raises(StoreClosedError):
        store.add_rating(message_id=t["answer"], rater="bob", rating="up")
    with pytest.raises(StoreClosedError):
        store.count_ratings()
    with Store(path) as again:
        assert again.count_ratings() == 50
        msg = again.get_message(t["answer"])
        assert msg is not None and msg["prompt"] == PROMPT
        assert again.integrity_check() == "ok"
        pragmas = again.query("PRAGMA journal_mode")
        assert pragmas[0]["journal_mode"] == "wal"


def test_bad_synchronous_mode(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="synchronous"):
        Store(tmp_path / "x.db", synchronous="SOMETIMES")


# -- users -------------------------------------------------------------------


def test_users(store: Store) -> None:
    uid = users.create_user(store, "alice", "correct horse")
    assert uid > 0
    assert users.verify_user(store, "alice", "correct horse") == {"name": "alice", "role": "user"}
    assert users.verify_user(store, "alice", "wrong password") is None
    assert users.verify_user(store, "nobody", "correct horse") is None
    assert users.get_role(store, "alice") == "user"
    assert users.get_role(store, "nobody") is None
    with pytest.raises(ValidationError, match="already exists"):
        users.create_user(store, "alice", "another password")
    for name in ("", "x" * 65, "bad name", "semi;colon"):
        with pytest.raises(ValidationError, match="name"):
            users.create_user(store, name, "long enough")
    with pytest.raises(ValidationError, match="password"):
        users.create_user(store, "bob", "short")
    with pytest.raises(ValidationError, match="role"):
        users.create_user(store, "bob", "long enough", role="root")
    users.create_user(store, "b.o_b-1", "long enough", role="admin")
    assert users.get_role(store, "b.o_b-1") == "admin"
    stored = store.query("SELECT password_hash FROM users WHERE name = 'alice'")[0]
    assert stored["password_hash"].startswith("$argon2id$")


def test_api_keys(store: Store) -> None:
    users.create_user(store, "alice", "correct horse")
    users.create_user(store, "root", "correct horse", role="admin")
    assert users.verify_api_key(store, "ak-" + "x" * 43) is None
    key = users.new_api_key(store, "alice")
    assert key.startswith("ak-") and len(key) == 46 and users.is_api_key(key)
    assert users.verify_api_key(store, key) == {"name": "alice", "role": "user"}
    # Only a hash is stored: the key appears in no column.
    (row,) = store.query("SELECT * FROM users WHERE name = 'alice'")
    assert key not in str(row) and row["api_key_hash"] == users.hash_api_key(key)
    for wrong in ("", "ak-", key[:-1], key + "x", key.upper(), "sk-" + key[3:], None, 42):
        assert users.verify_api_key(store, wrong) is None  # type: ignore[arg-type]
    # A new key replaces the old one; revoking ends it.
    newer = users.new_api_key(store, "alice")
    assert newer != key and users.verify_api_key(store, key) is None
    assert users.verify_api_key(store, newer) == {"name": "alice", "role": "user"}
    admin_key = users.new_api_key(store, "root")
    assert users.verify_api_key(store, admin_key) == {"name": "root", "role": "admin"}
    assert users.revoke_api_key(store, "alice") is True
    assert users.revoke_api_key(store, "alice") is False
    assert users.verify_api_key(store, newer) is None
    assert users.verify_api_key(store, admin_key) is not None
    with pytest.raises(NotFoundError, match="nobody"):
        users.new_api_key(store, "nobody")
    with pytest.raises(NotFoundError, match="nobody"):
        users.revoke_api_key(store, "nobody")
    listed = {u["name"]: u["has_api_key"] for u in users.list_users(store)}
    assert listed == {"alice": False, "root": True}
    assert all("api_key_hash" not in u for u in users.list_users(store))


def test_ensure_admin_once(store: Store) -> None:
    password = users.ensure_admin(store, None)
    assert password is not None and len(password) >= 12
    assert users.verify_user(store, "admin", password) == {"name": "admin", "role": "admin"}
    assert users.ensure_admin(store, None) is None
    assert users.ensure_admin(store, "some other password") is None
    assert users.verify_user(store, "admin", password) is not None


def test_ensure_admin_with_given_password(store: Store) -> None:
    assert users.ensure_admin(store, "hunter2hunter2") == "hunter2hunter2"
    assert users.verify_user(store, "admin", "hunter2hunter2") is not None
    assert users.ensure_admin(store, "hunter2hunter2") is None


def test_ensure_admin_takes_over_a_plain_account_called_admin(store: Store) -> None:
    users.create_user(store, "admin", "squatter password")
    password = users.ensure_admin(store, None)
    assert password is not None
    assert users.verify_user(store, "admin", password) == {"name": "admin", "role": "admin"}
    assert users.verify_user(store, "admin", "squatter password") is None
