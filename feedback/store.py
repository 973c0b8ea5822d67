"""The feedback store: the one component that writes the SQLite database.

All writes run on a single writer thread fed by a bounded queue, so SQLite
never sees two writers from this process and callers never hit "database is
locked". Each write is a ``BEGIN IMMEDIATE ... COMMIT`` transaction; queued
writes are grouped into one transaction (group commit) so that with
``synchronous=FULL`` many concurrent raters cost one fsync, not one each.
A caller's call returns only after the COMMIT that contains its write.
Reads use one connection per thread (WAL lets them run beside the writer).
"""

from __future__ import annotations

import datetime
import json
import queue
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Self, TypeVar

import sqlite_utils

from feedback.migrations import migrate

ALLOWED_TAGS = (
    "hallucination",
    "too_cautious",
    "wrong_format",
    "wrong_tone",
    "unsafe",
    "off_topic",
    "other",
)
RATINGS = ("up", "down")
WINNERS = ("a", "b", "tie", "both_bad")
MESSAGE_ROLES = ("user", "assistant")
SOURCES = ("ui", "api", "correction", "compare")
MAX_COMMENT_CHARS = 4000
MAX_CORRECTION_CHARS = 16000
MAX_LIST_LIMIT = 500
_MAX_ID_CHARS = 200
_SYNC_MODES = ("OFF", "NORMAL", "FULL", "EXTRA")
_MESSAGE_JSON = ("prompt", "presets", "sampling")

T = TypeVar("T")


class ValidationError(ValueError):
    """Bad input from a caller; the message says which field and why."""


class NotFoundError(LookupError):
    """A referenced row (message, conversation) does not exist or has the wrong kind."""


class StoreClosedError(RuntimeError):
    """The store was closed; no more reads or writes."""


def utc_now() -> str:
    """ISO-8601 UTC timestamp; a fixed format so TEXT comparison orders by time."""
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="microseconds")


def new_message_id() -> str:
    return "msg_" + uuid.uuid4().hex[:24]


@dataclass
class _Job(Generic[T]):
    fn: Callable[[sqlite_utils.Database], T]
    future: Future[T]


class Store:
    """The feedback database. Thread-safe; create one per process and share it."""

    def __init__(
        self,
        path: Path | str,
        *,
        synchronous: str = "FULL",
        queue_size: int = 1024,
        max_group: int = 128,
    ) -> None:
        sync = synchronous.upper()
        if sync not in _SYNC_MODES:
            raise ValueError(f"synchronous must be one of {_SYNC_MODES}, got {synchronous!r}")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: the driver opens no implicit transactions;
        # the writer issues BEGIN IMMEDIATE / COMMIT itself.
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA busy_timeout=10000")
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            conn.close()
            raise RuntimeError(f"could not enable WAL on {self.path} (journal_mode={mode})")
        conn.execute(f"PRAGMA synchronous={sync}")
        conn.execute("PRAGMA foreign_keys=ON")
        self._db = sqlite_utils.Database(conn, execute_plugins=False)
        try:
            migrate(self._db)
        except BaseException:
            conn.close()
            raise

        self._max_group = max(1, max_group)
        self._queue: queue.Queue[_Job[Any] | None] = queue.Queue(maxsize=queue_size)
        # Held while enqueueing so nothing can land behind close()'s stop marker.
        self._put_lock = threading.Lock()
        self._closed = False
        self._stats = {"writes": 0, "transactions": 0, "retried_groups": 0}
        self._local = threading.local()
        self._readers: list[tuple[threading.Thread, sqlite3.Connection]] = []
        self._readers_lock = threading.Lock()
        self._writer = threading.Thread(target=self._writer_loop, name="feedback-writer", daemon=True)
        self._writer.start()

    # -- lifecycle ---------------------------------------------------------

    def close(self) -> None:
        """Finish every queued write, stop the writer, close all connections."""
        with self._put_lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put(None)
        self._writer.join()
        self._db.close()
        with self._readers_lock:
            for _, conn in self._readers:
                conn.close()
            self._readers.clear()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def stats(self) -> dict[str, int]:
        """Writer counters: writes done, transactions committed, groups retried one by one."""
        return dict(self._stats)

    # -- generic write / read ----------------------------------------------

    def submit(self, fn: Callable[[sqlite_utils.Database], T]) -> Future[T]:
        """Queue ``fn(db)`` for the writer; the future resolves after its COMMIT.

        ``fn`` runs inside the writer's transaction and must only touch the
        database (it may run twice if its group is retried) and must not
        commit or roll back itself. Blocks while the queue is full.
        """
        future: Future[T] = Future()
        with self._put_lock:
            if self._closed:
                raise StoreClosedError("store is closed")
            self._queue.put(_Job(fn, future))
        return future

    def write(self, fn: Callable[[sqlite_utils.Database], T]) -> T:
        """Run ``fn(db)`` in a write transaction and return its result once committed."""
        if threading.get_ident() == self._writer.ident:
            # Called from inside another write: we're already in its
            # transaction, and waiting on the queue would deadlock.
            return fn(self._db)
        return self.submit(fn).result()

    def query(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[dict[str, Any]]:
        """Run a read-only query on this thread's read connection."""
        return [dict(row) for row in self._reader().execute(sql, params)]

    def _reader(self) -> sqlite3.Connection:
        if self._closed:
            raise StoreClosedError("store is closed")
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA busy_timeout=10000")
            conn.execute("PRAGMA query_only=ON")  # reads can never bypass the writer
            conn.row_factory = sqlite3.Row
            with self._readers_lock:
                # Close connections left behind by threads that have exited.
                alive = []
                for thread, other in self._readers:
                    if thread.is_alive():
                        alive.append((thread, other))
                    else:
                        other.close()
                alive.append((threading.current_thread(), conn))
                self._readers = alive
            self._local.conn = conn
        return conn

    # -- the writer thread -------------------------------------------------

    def _writer_loop(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            group = [job]
            stop = False
            while len(group) < self._max_group:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                group.append(nxt)
            try:
                self._commit_group(group)
            except BaseException as exc:  # the writer must survive, or callers hang forever
                for j in group:
                    if not j.future.done():
                        j.future.set_exception(exc)
            if stop:
                return

    def _commit_group(self, group: list[_Job[Any]]) -> None:
        jobs = [j for j in group if j.future.set_running_or_notify_cancel()]
        if not jobs:
            return
        try:
            outcomes = self._transaction(jobs)
        except Exception as exc:  # delivered to the caller's future
            if len(jobs) == 1:
                jobs[0].future.set_exception(exc)
                return
            # The group's transaction failed as a whole (an error that rolled
            # back everything, or COMMIT failed): retry each write alone so a
            # bad one can't sink the others.
            self._stats["retried_groups"] += 1
            for job in jobs:
                try:
                    self._deliver([job], self._transaction([job]))
                except Exception as one_exc:  # delivered to the caller's future
                    job.future.set_exception(one_exc)
            return
        self._deliver(jobs, outcomes)

    def _transaction(self, jobs: list[_Job[Any]]) -> list[tuple[bool, Any]]:
        """Run jobs in one transaction; each in a savepoint so its failure is its own."""
        conn = self._db.conn
        conn.execute("BEGIN IMMEDIATE")
        outcomes: list[tuple[bool, Any]] = []
        try:
            for job in jobs:
                conn.execute("SAVEPOINT store_write")
                try:
                    value = job.fn(self._db)
                except Exception as exc:
                    if not conn.in_transaction:
                        raise  # the error ended the whole transaction
                    conn.execute("ROLLBACK TO store_write")
                    conn.execute("RELEASE store_write")
                    outcomes.append((False, exc))
                else:
                    conn.execute("RELEASE store_write")
                    outcomes.append((True, value))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        self._stats["transactions"] += 1
        return outcomes

    def _deliver(self, jobs: list[_Job[Any]], outcomes: list[tuple[bool, Any]]) -> None:
        for job, (ok, value) in zip(jobs, outcomes, strict=True):
            self._stats["writes"] += 1
            if ok:
                job.future.set_result(value)
            else:
                job.future.set_exception(value)

    # -- domain writes -----------------------------------------------------

    def create_conversation(self, owner: str, title: str | None = None, id: str | None = None) -> str:
        """Create a conversation owned by ``owner`` (username or 'anon:<session>')."""
        owner = _text("owner", owner, max_chars=_MAX_ID_CHARS)
        if title is not None and not isinstance(title, str):
            raise ValidationError("title must be a string")
        conv_id = (
            _text("id", id, max_chars=_MAX_ID_CHARS) if id is not None else "conv_" + uuid.uuid4().hex[:24]
        )

        def fn(db: sqlite_utils.Database) -> str:
            if db.execute("SELECT 1 FROM conversations WHERE id = ?", [conv_id]).fetchone():
                raise ValidationError(f"conversation {conv_id!r} already exists")
            db.execute(
                "INSERT INTO conversations (id, owner, title, created_at) VALUES (?, ?, ?, ?)",
                [conv_id, owner, title, utc_now()],
            )
            return conv_id

        return self.write(fn)

    def record_message(
        self,
        *,
        conversation_id: str,
        role: str,
        content: str,
        parent_id: str | None = None,
        prompt: list[dict[str, Any]] | None = None,
        presets: dict[str, Any] | None = None,
        sampling: dict[str, Any] | None = None,
        model_id: str | None = None,
        adapter_version: str | None = None,
        prompt_tokens: int | None = None,
        completion_tokens: int | None = None,
        latency_ms: float | None = None,
        finish_reason: str | None = None,
        source: str = "ui",
        corrects_id: str | None = None,
        created_by: str | None = None,
        id: str | None = None,
    ) -> str:
        """Store one chat message; returns its id ('msg_<24 hex>' unless given).

        ``prompt`` is the full list of chat messages exactly as sent to the
        model (system prompt included). The conversation, the parent and the
        corrected message must exist.
        """
        if role not in MESSAGE_ROLES:
            raise ValidationError(f"role must be one of {MESSAGE_ROLES}, got {role!r}")
        if source not in SOURCES:
            raise ValidationError(f"source must be one of {SOURCES}, got {source!r}")
        if not isinstance(content, str):
            raise ValidationError("content must be a string")
        if prompt is not None and not (isinstance(prompt, list) and all(isinstance(m, dict) for m in prompt)):
            raise ValidationError("prompt must be a list of message dicts")
        for name, value in (("presets", presets), ("sampling", sampling)):
            if value is not None and not isinstance(value, dict):
                raise ValidationError(f"{name} must be a dict")
        for name, count in (
            ("prompt_tokens", prompt_tokens),
            ("completion_tokens", completion_tokens),
        ):
            if count is not None and (not isinstance(count, int) or isinstance(count, bool) or count < 0):
                raise ValidationError(f"{name} must be a non-negative integer")
        if latency_ms is not None and (
            isinstance(latency_ms, bool) or not isinstance(latency_ms, (int, float)) or latency_ms < 0
        ):
            raise ValidationError("latency_ms must be a non-negative number")
        msg_id = _text("id", id, max_chars=_MAX_ID_CHARS) if id is not None else new_message_id()
        row = {
            "id": msg_id,
            "conversation_id": conversation_id,
            "parent_id": parent_id,
            "role": role,
            "content": content,
            "prompt_json": _dumps("prompt", prompt),
            "presets_json": _dumps("presets", presets),
            "sampling_json": _dumps("sampling", sampling),
            "model_id": model_id,
            "adapter_version": adapter_version,
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "latency_ms": latency_ms,
            "finish_reason": finish_reason,
            "source": source,
            "corrects_id": corrects_id,
            "created_by": created_by,
        }

        def fn(db: sqlite_utils.Database) -> str:
            if not db.execute("SELECT 1 FROM conversations WHERE id = ?", [conversation_id]).fetchone():
                raise NotFoundError(f"conversation {conversation_id!r} not found")
            if (
                parent_id is not None
                and not db.execute(
                    "SELECT 1 FROM messages WHERE id = ? AND conversation_id = ?",
                    [parent_id, conversation_id],
                ).fetchone()
            ):
                raise NotFoundError(
                    f"parent message {parent_id!r} not found in conversation {conversation_id!r}"
                )
            if (
                corrects_id is not None
                and not db.execute("SELECT 1 FROM messages WHERE id = ?", [corrects_id]).fetchone()
            ):
                raise NotFoundError(f"corrected message {corrects_id!r} not found")
            if db.execute("SELECT 1 FROM messages WHERE id = ?", [msg_id]).fetchone():
                raise ValidationError(f"message {msg_id!r} already exists")
            _insert(db, "messages", {**row, "created_at": utc_now()})
            return msg_id

        return self.write(fn)

    def add_rating(
        self,
        *,
        message_id: str,
        rater: str,
        rating: str | None = None,
        stars: int | None = None,
        tags: Iterable[str] = (),
        comment: str | None = None,
        correction: str | None = None,
        origin: str | None = None,
    ) -> int:
        """Record ``rater``'s judgement of an assistant message; returns the rating id.

        Ratings are append-only: the newest row per (message, rater) is the
        current one, older rows are history. A ``correction`` (the answer the
        rater wanted) becomes a new assistant message in the same transaction.
        ``origin`` is who sent it as far as the server can tell (``user:<account>``
        or ``ip:<address>``); None means unknown, and curation then treats the
        rater as its own origin.
        """
        rater = _text("rater", rater, max_chars=_MAX_ID_CHARS)
        origin = _origin(origin)
        if rating is not None and rating not in RATINGS:
            raise ValidationError(f"rating must be one of {RATINGS} or None, got {rating!r}")
        if stars is not None and (
            not isinstance(stars, int) or isinstance(stars, bool) or not 1 <= stars <= 5
        ):
            raise ValidationError(f"stars must be an integer from 1 to 5, got {stars!r}")
        if isinstance(tags, str):
            raise ValidationError("tags must be a list of tag names, not a string")
        tag_list = list(dict.fromkeys(tags))  # dedupe, keep order
        unknown = [t for t in tag_list if t not in ALLOWED_TAGS]
        if unknown:
            raise ValidationError(f"unknown tags {unknown}; allowed: {ALLOWED_TAGS}")
        comment = _optional_text("comment", comment, MAX_COMMENT_CHARS)
        correction = _optional_text("correction", correction, MAX_CORRECTION_CHARS)
        if rating is None and stars is None and not tag_list and comment is None and correction is None:
            raise ValidationError(
                "empty rating: give at least one of rating, stars, tags, comment, correction"
            )
        tags_json = json.dumps(tag_list)
        # Chosen before the write so a retried group reuses the same id.
        correction_id = new_message_id() if correction is not None else None

        def fn(db: sqlite_utils.Database) -> int:
            judged = _assistant_message(db, message_id)
            now = utc_now()
            if correction is not None:
                _insert(
                    db,
                    "messages",
                    {
                        "id": correction_id,
                        "conversation_id": judged["conversation_id"],
                        # A sibling of the judged answer: same parent, same prompt.
                        "parent_id": judged["parent_id"],
                        "role": "assistant",
                        "content": correction,
                        "prompt_json": judged["prompt_json"],
                        "presets_json": judged["presets_json"],
                        "source": "correction",
                        "corrects_id": message_id,
                        "created_by": rater,
                        "created_at": now,
                    },
                )
            return _insert(
                db,
                "ratings",
                {
                    "message_id": message_id,
                    "rater": rater,
                    "rating": rating,
                    "stars": stars,
                    "tags_json": tags_json,
                    "comment": comment,
                    "correction_id": correction_id,
                    "origin": origin,
                    "created_at": now,
                },
            )

        return self.write(fn)

    def add_comparison(
        self, *, message_a: str, message_b: str, winner: str, rater: str, origin: str | None = None
    ) -> int:
        """Record which of two answers ``rater`` preferred; returns its id (``origin``: see add_rating)."""
        rater = _text("rater", rater, max_chars=_MAX_ID_CHARS)
        origin = _origin(origin)
        if winner not in WINNERS:
            raise ValidationError(f"winner must be one of {WINNERS}, got {winner!r}")
        if message_a == message_b:
            raise ValidationError("message_a and message_b must be different messages")

        def fn(db: sqlite_utils.Database) -> int:
            _assistant_message(db, message_a)
            _assistant_message(db, message_b)
            return _insert(
                db,
                "comparisons",
                {
                    "message_a": message_a,
                    "message_b": message_b,
                    "winner": winner,
                    "rater": rater,
                    "origin": origin,
                    "created_at": utc_now(),
                },
            )

        return self.write(fn)

    # -- reads -------------------------------------------------------------

    def get_message(self, id: str) -> dict[str, Any] | None:
        """A message with prompt/presets/sampling decoded, or None."""
        rows = self.query("SELECT * FROM messages WHERE id = ?", [id])
        return _decode_message(rows[0]) if rows else None

    def current_rating(self, message_id: str, rater: str) -> dict[str, Any] | None:
        """The newest rating by ``rater`` on the message (older ones are history)."""
        rows = self.query(
            "SELECT * FROM ratings WHERE message_id = ? AND rater = ? ORDER BY id DESC LIMIT 1",
            [message_id, rater],
        )
        return _decode_rating(rows[0]) if rows else None

    def list_feedback(
        self,
        *,
        rater: str | None = None,
        tag: str | None = None,
        rating: str | None = None,
        adapter_version: str | None = None,
        since: str | datetime.datetime | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[dict[str, Any]]:
        """Rating rows (history included) joined with the judged message, newest first.

        ``adapter_version='base'`` also matches messages stored with NULL.
        ``since`` is an ISO timestamp/date or datetime; limit is capped at 500.
        """
        if tag is not None and tag not in ALLOWED_TAGS:
            raise ValidationError(f"unknown tag {tag!r}; allowed: {ALLOWED_TAGS}")
        if rating is not None and rating not in RATINGS:
            raise ValidationError(f"rating must be one of {RATINGS}, got {rating!r}")
        where: list[str] = []
        params: list[Any] = []
        if rater is not None:
            where.append("r.rater = ?")
            params.append(rater)
        if tag is not None:
            where.append("EXISTS (SELECT 1 FROM json_each(r.tags_json) WHERE value = ?)")
            params.append(tag)
        if rating is not None:
            where.append("r.rating = ?")
            params.append(rating)
        if adapter_version is not None:
            where.append("COALESCE(m.adapter_version, 'base') = ?")
            params.append(adapter_version)
        if since is not None:
            where.append("r.created_at >= ?")
            params.append(_iso(since))
        limit = max(0, min(int(limit), MAX_LIST_LIMIT))
        offset = max(0, int(offset))
        sql = f"""
            SELECT r.*, m.conversation_id, m.content, m.model_id,
                   COALESCE(m.adapter_version, 'base') AS adapter_version,
                   c.content AS correction
            FROM ratings r
            JOIN messages m ON m.id = r.message_id
            LEFT JOIN messages c ON c.id = r.correction_id
            {"WHERE " + " AND ".join(where) if where else ""}
            ORDER BY r.id DESC LIMIT ? OFFSET ?
        """
        return [_decode_rating(row) for row in self.query(sql, [*params, limit, offset])]

    def feedback_counts(self) -> dict[str, Any]:
        """Totals plus breakdowns by rating, tag and stars (current ratings only)."""
        totals = self.query(
            f"""
            SELECT (SELECT count(*) FROM ratings) AS ratings,
                   (SELECT count(*) FROM ({_CURRENT})) AS current_ratings,
                   (SELECT count(DISTINCT message_id) FROM ratings) AS rated_messages,
                   (SELECT count(DISTINCT rater) FROM ratings) AS raters,
                   (SELECT count(DISTINCT origin) FROM ratings) AS origins,
                   (SELECT count(*) FROM comparisons) AS comparisons,
                   (SELECT count(*) FROM messages WHERE source = 'correction') AS corrections
            """
        )[0]
        by_rating = {r: 0 for r in RATINGS}
        for row in self.query(
            f"SELECT rating, count(*) AS n FROM ({_CURRENT}) WHERE rating IS NOT NULL GROUP BY rating"
        ):
            by_rating[row["rating"]] = row["n"]
        by_tag = {t: 0 for t in ALLOWED_TAGS}
        for row in self.query(
            f"""SELECT j.value AS tag, count(*) AS n
                FROM ({_CURRENT}) cur, json_each(cur.tags_json) j GROUP BY j.value"""
        ):
            by_tag[row["tag"]] = row["n"]
        by_stars = {s: 0 for s in range(1, 6)}
        for row in self.query(
            f"SELECT stars, count(*) AS n FROM ({_CURRENT}) WHERE stars IS NOT NULL GROUP BY stars"
        ):
            by_stars[row["stars"]] = row["n"]
        return {
            **totals,
            "by_rating": by_rating,
            "by_tag": by_tag,
            "by_stars": by_stars,
        }

    def daily_up_rate(self) -> list[dict[str, Any]]:
        """Per UTC day and adapter version: current up/down counts and up/(up+down)."""
        rows = self.query(
            f"""
            SELECT substr(cur.created_at, 1, 10) AS day,
                   COALESCE(m.adapter_version, 'base') AS adapter_version,
                   sum(cur.rating = 'up') AS up,
                   sum(cur.rating = 'down') AS down
            FROM ({_CURRENT}) cur JOIN messages m ON m.id = cur.message_id
            WHERE cur.rating IS NOT NULL
            GROUP BY day, COALESCE(m.adapter_version, 'base')
            ORDER BY day, adapter_version
            """
        )
        for row in rows:
            row["rate"] = row["up"] / (row["up"] + row["down"])
        return rows

    def events(self) -> dict[str, list[dict[str, Any]]]:
        """Everything curation needs, JSON decoded, oldest first.

        messages: assistant messages that were rated or compared, plus
        corrections. ratings: every row, with ``current`` marking the newest
        per (message, rater). comparisons: every row.
        """
        messages = self.query(
            """
            SELECT * FROM messages m
            WHERE m.role = 'assistant' AND (
                m.source = 'correction'
                OR EXISTS (SELECT 1 FROM ratings r WHERE r.message_id = m.id)
                OR EXISTS (SELECT 1 FROM comparisons c WHERE c.message_a = m.id OR c.message_b = m.id)
            )
            ORDER BY m.created_at, m.id
            """
        )
        ratings = self.query(
            f"""
            SELECT r.*, r.id IN (SELECT id FROM ({_CURRENT})) AS current
            FROM ratings r ORDER BY r.id
            """
        )
        comparisons = self.query("SELECT * FROM comparisons ORDER BY id")
        for rating in ratings:
            rating["current"] = bool(rating["current"])
        return {
            "messages": [_decode_message(m) for m in messages],
            "ratings": [_decode_rating(r) for r in ratings],
            "comparisons": comparisons,
        }

    def count_ratings(self) -> int:
        return int(self.query("SELECT count(*) AS n FROM ratings")[0]["n"])

    def integrity_check(self) -> str:
        """'ok' when SQLite finds no corruption, else its report."""
        return "\n".join(str(r["integrity_check"]) for r in self.query("PRAGMA integrity_check"))


# The current rating per (message, rater) is the one with the highest id:
# the single writer assigns ids in commit order.
_CURRENT = """
    SELECT * FROM ratings r
    WHERE r.id = (SELECT max(r2.id) FROM ratings r2
                  WHERE r2.message_id = r.message_id AND r2.rater = r.rater)
"""


def _text(name: str, value: object, *, max_chars: int) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(f"{name} must be a non-empty string")
    if len(value) > max_chars:
        raise ValidationError(f"{name} is too long ({len(value)} > {max_chars} characters)")
    return value


def _origin(value: object) -> str | None:
    """None (unknown) or 'user:<account>' / 'ip:<address>' (any 'kind:value' label, really)."""
    if value is None:
        return None
    origin = _text("origin", value, max_chars=_MAX_ID_CHARS)
    kind, sep, rest = origin.partition(":")
    if not sep or not kind or not rest:
        raise ValidationError(f"origin must look like 'user:<account>' or 'ip:<address>', got {origin!r}")
    return origin


def _optional_text(name: str, value: object, max_chars: int) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValidationError(f"{name} must be a string")
    if not value.strip():
        return None  # blank means "not given", not an empty correction
    if len(value) > max_chars:
        raise ValidationError(f"{name} is too long ({len(value)} > {max_chars} characters)")
    return value


def _dumps(name: str, value: object) -> str | None:
    if value is None:
        return None
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"{name} is not JSON-serializable: {exc}") from exc


def _iso(when: str | datetime.datetime) -> str:
    if isinstance(when, datetime.datetime):
        if when.tzinfo is None:
            when = when.replace(tzinfo=datetime.UTC)  # naive means UTC here
        return when.astimezone(datetime.UTC).isoformat(timespec="microseconds")
    return when


def _insert(db: sqlite_utils.Database, table: str, row: dict[str, Any]) -> int:
    columns = ", ".join(row)
    marks = ", ".join("?" for _ in row)
    cursor = db.execute(f"INSERT INTO {table} ({columns}) VALUES ({marks})", list(row.values()))
    return int(cursor.lastrowid or 0)


def _assistant_message(db: sqlite_utils.Database, message_id: str) -> dict[str, Any]:
    cursor = db.execute("SELECT * FROM messages WHERE id = ?", [message_id])
    row = cursor.fetchone()
    if row is None:
        raise NotFoundError(f"message {message_id!r} not found")
    message = dict(zip([d[0] for d in cursor.description], row, strict=True))
    if message["role"] != "assistant":
        raise NotFoundError(f"message {message_id!r} is not an assistant message")
    return message


def _decode_message(row: dict[str, Any]) -> dict[str, Any]:
    for key in _MESSAGE_JSON:
        raw = row.pop(f"{key}_json")
        row[key] = json.loads(raw) if raw is not None else None
    return row


def _decode_rating(row: dict[str, Any]) -> dict[str, Any]:
    raw = row.pop("tags_json")
    row["tags"] = json.loads(raw) if raw else []
    return row
