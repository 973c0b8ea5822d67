"""The human review queue: items wait as 'pending' until an admin approves (maybe edits) or rejects them.

Reads take anything with ``query(sql, params)`` that yields dict rows (a
``sqlite_utils.Database`` or the feedback ``Store``); writes go through
``write(fn)``, which runs ``fn(db)`` in the single writer's transaction
(``Store.write``; in a script, ``lambda fn: fn(db)``).

    sync_queue(result, store, store.write)          # after curate()
    decide(store, store.write, ids, "approve", by="admin")
    result = apply_review(result, store)            # only reviewed items train

Queue rows live in ``review_items`` keyed by the item's content hash, so
re-curating the same feedback finds earlier decisions again.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

import sqlite_utils

from feedback.curate import CurationResult, assemble
from feedback.filters import (
    CONTENT_KEYS,
    Dropped,
    Item,
    cap_filters,
    drop,
    item_content,
    item_kind,
    scrub_item_content,
    split_of,
    with_content,
)

DECISIONS = {"approve": "approved", "reject": "rejected"}
STATUSES = ("pending", "approved", "rejected")
MAX_PAGE = 500

T = TypeVar("T")
Write = Callable[[Callable[[sqlite_utils.Database], T]], T]


class Reader(Protocol):
    def query(self, sql: str, params: Any = ...) -> Iterable[dict[str, Any]]: ...


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="microseconds")


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def sync_queue(result: CurationResult, db: Reader, write: Write[int]) -> int:
    """Queue every item in ``result.needs_review`` as pending; returns how many were new.

    Idempotent: an item already queued (any status) keeps its row and decision.
    With ``require_review`` every item is in ``needs_review``, so all are queued.
    """
    known = {row["id"] for row in db.query("SELECT id FROM review_items")}
    now = _now()
    rows = [
        {
            "id": item["id"],
            "kind": item_kind(item),
            "payload_json": _dumps(item_content(item)),
            "source_json": _dumps(item["meta"]),
            "status": "pending",
            "created_at": now,
        }
        for item in result.needs_review
        if item["id"] not in known
    ]

    def fn(wdb: sqlite_utils.Database) -> int:
        added = 0
        for row in rows:
            # OR IGNORE: another curation may have queued it since we read.
            cursor = wdb.execute(
                "INSERT OR IGNORE INTO review_items (id, kind, payload_json, source_json, status, created_at)"
                " VALUES (:id, :kind, :payload_json, :source_json, :status, :created_at)",
                row,
            )
            added += cursor.rowcount
        return added

    return write(fn) if rows else 0


def decide(
    db: Reader,
    write: Write[int],
    item_ids: Sequence[str],
    decision: str,
    by: str,
    edited_payload: Mapping[str, Any] | None = None,
    reason: str | None = None,
) -> int:
    """Approve or reject queued items in one transaction; returns how many rows changed.

    ``edited_payload`` (approve only, one item) replaces the item's TRL
    columns, e.g. ``{"messages": [...]}`` for SFT. Deciding again overwrites
    the earlier decision; who and when are stored with it.
    """
    if decision not in DECISIONS:
        raise ValueError(f"decision must be one of {sorted(DECISIONS)}, got {decision!r}")
    if not isinstance(by, str) or not by.strip():
        raise ValueError("by must name the reviewer (a non-empty string)")
    if isinstance(item_ids, str):
        raise ValueError("item_ids must be a list of ids, not one string")
    ids = list(dict.fromkeys(item_ids))
    if not ids:
        return 0
    if edited_payload is not None and (decision != "approve" or len(ids) != 1):
        raise ValueError("edited_payload needs decision='approve' and exactly one item id")
    kinds = _kinds(db, ids)
    missing = [i for i in ids if i not in kinds]
    if missing:
        raise LookupError(f"not in the review queue: {missing[:5]}{' ...' if len(missing) > 5 else ''}")
    edited_json = None
    if edited_payload is not None:
        edited_json = _dumps(validate_payload(kinds[ids[0]], edited_payload))
    status, now = DECISIONS[decision], _now()

    def fn(wdb: sqlite_utils.Database) -> int:
        changed = 0
        for item_id in ids:
            cursor = wdb.execute(
                "UPDATE review_items SET status = ?, decided_by = ?, decided_at = ?, reason = ?,"
                " edited_payload_json = COALESCE(?, edited_payload_json) WHERE id = ?",
                [status, by, now, reason, edited_json, item_id],
            )
            changed += cursor.rowcount
        return changed

    return write(fn)


def validate_payload(kind: str, payload: Mapping[str, Any]) -> dict[str, Any]:
    """An edited item must keep its kind's TRL shape; returns the clean payload."""
    keys = CONTENT_KEYS[kind]
    if set(payload) != set(keys):
        raise ValueError(f"a {kind} payload has exactly the keys {list(keys)}, got {sorted(payload)}")
    clean: dict[str, Any] = {}
    for key in keys:
        value = payload[key]
        if key == "label":
            if not isinstance(value, bool):
                raise ValueError("label must be true or false")
            clean[key] = value
            continue
        if not isinstance(value, list) or not value:
            raise ValueError(f"{key} must be a non-empty list of {{role, content}} messages")
        for m in value:
            if (
                not isinstance(m, Mapping)
                or not isinstance(m.get("role"), str)
                or not isinstance(m.get("content"), str)
            ):
                raise ValueError(f"every message in {key} needs a string role and content")
        clean[key] = [{"role": m["role"], "content": m["content"]} for m in value]
    last = clean["messages"][-1] if kind == "sft" else None
    if last is not None and last["role"] != "assistant":
        raise ValueError("an SFT payload must end with the assistant's answer")
    if kind != "sft" and clean["prompt"][-1]["role"] != "user":
        raise ValueError("the prompt must end with the user's turn")
    return clean


def pending(db: Reader, limit: int = 50, offset: int = 0) -> list[dict[str, Any]]:
    """Queued items oldest first, payload and provenance decoded; limit capped at 500."""
    limit = max(0, min(int(limit), MAX_PAGE))
    rows = db.query(
        "SELECT * FROM review_items WHERE status = 'pending' ORDER BY created_at, id LIMIT ? OFFSET ?",
        [limit, max(0, int(offset))],
    )
    return [_decode(row) for row in rows]


def approved_ids(db: Reader) -> set[str]:
    return {row["id"] for row in db.query("SELECT id FROM review_items WHERE status = 'approved'")}


def rejected_ids(db: Reader) -> set[str]:
    return {row["id"] for row in db.query("SELECT id FROM review_items WHERE status = 'rejected'")}


def counts(db: Reader) -> dict[str, int]:
    """Queue size per status (for the admin page)."""
    out = dict.fromkeys(STATUSES, 0)
    for row in db.query("SELECT status, count(*) AS n FROM review_items GROUP BY status"):
        out[str(row["status"])] = int(row["n"])
    return out


def apply_review(result: CurationResult, db: Reader) -> CurationResult:
    """Only what may train: unreviewed-safe items plus approved ones (edits applied).

    Items waiting for review and still pending are dropped as "awaiting
    review" (and stay in ``needs_review``); rejected ones are dropped as
    "rejected by <who>", wherever they were. The per-rater and per-origin
    caps are applied again to the final set. Returns a new result with the report and dataset
    hash recomputed.
    """
    heldout_fraction = result.config.heldout_fraction
    decided = {
        row["id"]: row
        for row in db.query(
            "SELECT id, status, edited_payload_json, decided_by, decided_at, reason"
            " FROM review_items WHERE status IN ('approved', 'rejected')"
        )
    }
    kept: list[Item] = []
    still_pending: list[Item] = []
    dropped: list[Dropped] = list(result.dropped)
    for item in result.items():
        row = decided.get(item["id"])
        if row is not None and row["status"] == "rejected":
            dropped.append(drop(item, "review", _rejected_reason(row)))
        elif row is not None:
            kept.append(_approved(item, row, heldout_fraction))
        else:
            kept.append(item)
    for item in result.needs_review:
        row = decided.get(item["id"])
        if row is None:
            still_pending.append(item)
            dropped.append(drop(item, "review", "awaiting review"))
        elif row["status"] == "rejected":
            dropped.append(drop(item, "review", _rejected_reason(row)))
        else:
            kept.append(_approved(item, row, heldout_fraction))
    unique: dict[str, Item] = {}
    for item in kept:
        if item["id"] in unique:  # an edit can make two items identical
            dropped.append(drop(item, "exact_duplicate", f"same content as {item['id']} after review edits"))
        else:
            unique[item["id"]] = item
    # Approved items join the training set: the per-rater and per-origin caps must hold for the whole of it.
    capped = list(unique.values())
    for cap in cap_filters(result.config.rater_cap, heldout_fraction):
        capped, over_cap = cap(capped)
        dropped += over_cap
    filter_names = [*result.filters, *([] if "review" in result.filters else ["review"])]
    context = {k: v for k, v in result.report.items() if k in ("config", "events", "candidates", "raters")}
    return assemble(
        capped,
        still_pending,
        dropped,
        filter_names=filter_names,
        context=context,
        config=result.config,
    )


def _rejected_reason(row: Mapping[str, Any]) -> str:
    why = f": {row['reason']}" if row.get("reason") else ""
    return f"rejected by {row['decided_by']}{why}"


def _approved(item: Item, row: Mapping[str, Any], heldout_fraction: float) -> Item:
    meta = {
        **item["meta"],
        "review": [],
        "reviewed": {
            "review_id": row["id"],
            "by": row["decided_by"],
            "at": row["decided_at"],
            "edited": row["edited_payload_json"] is not None,
        },
    }
    if row["edited_payload_json"] is None:
        return {**item, "meta": meta}
    payload = validate_payload(item_kind(item), json.loads(row["edited_payload_json"]))
    # Edits go to training like everything else: scrub them too.
    clean, found = scrub_item_content(item_kind(item), payload)
    edited = with_content({**item, "meta": meta}, clean)
    if found:
        edited["meta"]["pii"] = dict(sorted(found.items()))
    # An edited prompt may belong on the other side of the split.
    edited["meta"]["split"] = split_of(edited, heldout_fraction)
    return edited


def _kinds(db: Reader, ids: Sequence[str]) -> dict[str, str]:
    kinds: dict[str, str] = {}
    for start in range(0, len(ids), MAX_PAGE):
        chunk = list(ids[start : start + MAX_PAGE])
        marks = ", ".join("?" for _ in chunk)
        for row in db.query(f"SELECT id, kind FROM review_items WHERE id IN ({marks})", chunk):
            kinds[str(row["id"])] = str(row["kind"])
    return kinds


def _decode(row: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(row)
    for key in ("payload", "source", "edited_payload"):
        raw = out.pop(f"{key}_json", None)
        out[key] = json.loads(raw) if raw else None
    return out
