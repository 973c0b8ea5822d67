"""Human review queue: sync, decide (bulk, with edits), apply to a curation result."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
import sqlite_utils

from feedback.curate import CurationConfig, CurationResult, curate
from feedback.filters import item_kind
from feedback.review import (
    apply_review,
    approved_ids,
    counts,
    decide,
    pending,
    rejected_ids,
    sync_queue,
)
from tests.test_curate import FeedbackLog, words

REVIEW_ITEMS = """
CREATE TABLE review_items (
    id TEXT PRIMARY KEY,
    kind TEXT,
    payload_json TEXT,
    source_json TEXT,
    status TEXT,
    edited_payload_json TEXT,
    reason TEXT,
    decided_by TEXT,
    decided_at TEXT,
    created_at TEXT
)
"""


def review_db(tmp_path: Path) -> sqlite_utils.Database:
    """A database with just the store's review_items table (same schema as migration m001)."""
    db = sqlite_utils.Database(tmp_path / "review.db")
    db.execute(REVIEW_ITEMS)
    return db


def writer(db: sqlite_utils.Database) -> Any:
    def write(fn: Any) -> Any:
        with db.conn:  # one transaction per write, as the store's writer does
            return fn(db)

    return write


def held_result() -> CurationResult:
    """Three answers (one good, one bad, one with a correction); every item held for review."""
    log = FeedbackLog()
    log.rate(log.answer("What is 2+2?", "4"), "ann", "up")
    log.rate(log.answer("Capital of Italy?", "Milan."), "ann", "down")
    log.rate(log.answer("Largest planet?", "Saturn."), "bob", "down", correction="Jupiter.")
    return curate(log.events(), CurationConfig(heldout_fraction=0.0, rater_cap=1.0, require_review=True))


def test_require_review_holds_everything_until_approved(tmp_path: Path) -> None:
    db = review_db(tmp_path)
    write = writer(db)
    result = held_result()
    assert result.items() == [] and len(result.needs_review) == 5  # 3 KTO + SFT + DPO

    assert sync_queue(result, db, write) == 5
    assert sync_queue(result, db, write) == 0  # idempotent
    assert counts(db) == {"pending": 5, "approved": 0, "rejected": 0}
    queued = pending(db, limit=10)
    assert {row["id"] for row in queued} == {it["id"] for it in result.needs_review}
    assert all(row["status"] == "pending" and row["payload"] and row["source"]["raters"] for row in queued)
    assert pending(db, limit=2, offset=4) == queued[4:]

    nothing = apply_review(result, db)
    assert nothing.items() == [] and len(nothing.needs_review) == 5
    assert [d["reason"] for d in nothing.dropped if d["filter"] == "review"] == ["awaiting review"] * 5

    kto_ids = [it["id"] for it in result.needs_review if item_kind(it) == "kto"]
    assert decide(db, write, kto_ids, "approve", by="admin") == 3
    assert approved_ids(db) == set(kto_ids)
    reviewed = apply_review(result, db)
    assert sorted(it["id"] for it in reviewed.kto) == sorted(kto_ids)
    assert reviewed.sft == [] and reviewed.dpo == [] and len(reviewed.needs_review) == 2
    assert reviewed.dataset_hash != result.dataset_hash
    assert reviewed.report["train"]["kto"] == 3
    assert all(it["meta"]["reviewed"]["by"] == "admin" for it in reviewed.kto)


def test_decisions_store_who_when_and_why(tmp_path: Path) -> None:
    db = review_db(tmp_path)
    write = writer(db)
    result = held_result()
    sync_queue(result, db, write)
    dpo = next(it for it in result.needs_review if item_kind(it) == "dpo")
    decide(db, write, [dpo["id"]], "reject", by="carol", reason="chosen answer is wrong")
    row = db["review_items"].get(dpo["id"])
    assert row["status"] == "rejected" and row["decided_by"] == "carol"
    assert row["reason"] == "chosen answer is wrong" and row["decided_at"].startswith("20")
    assert rejected_ids(db) == {dpo["id"]}

    after = apply_review(result, db)
    assert after.dpo == [] and dpo["id"] not in {it["id"] for it in after.needs_review}
    assert ("review", "rejected by carol: chosen answer is wrong") in {
        (d["filter"], d["reason"]) for d in after.dropped if d["item"]["id"] == dpo["id"]
    }


def test_edits_are_applied_and_scrubbed(tmp_path: Path) -> None:
    db = review_db(tmp_path)
    write = writer(db)
    result = held_result()
    sync_queue(result, db, write)
    sft = next(it for it in result.needs_review if item_kind(it) == "sft")
    edited = {
        "messages": [
            *sft["messages"][:-1],
            {"role": "assistant", "content": "Jupiter, the largest planet. Mail facts@planets.example"},
        ]
    }
    decide(db, write, [sft["id"]], "approve", by="admin", edited_payload=edited)
    after = apply_review(result, db)
    [trained] = after.sft
    assert trained["messages"][-1]["content"] == "Jupiter, the largest planet. Mail [EMAIL]"
    assert trained["id"] != sft["id"]  # new content, new hash
    assert trained["meta"]["reviewed"] == {
        "review_id": sft["id"],
        "by": "admin",
        "at": db["review_items"].get(sft["id"])["decided_at"],
        "edited": True,
    }
    assert after.report["train"]["sft"] == 1


def test_rejected_items_are_removed_even_when_review_is_not_required(tmp_path: Path) -> None:
    db = review_db(tmp_path)
    write = writer(db)
    held = held_result()
    sync_queue(held, db, write)
    kto = next(it for it in held.needs_review if item_kind(it) == "kto")
    decide(db, write, [kto["id"]], "reject", by="admin")

    log = FeedbackLog()
    log.rate(log.answer("What is 2+2?", "4"), "ann", "up")
    log.rate(log.answer("Capital of Italy?", "Milan."), "ann", "down")
    log.rate(log.answer("Largest planet?", "Saturn."), "bob", "down", correction="Jupiter.")
    free = curate(log.events(), CurationConfig(heldout_fraction=0.0, rater_cap=1.0))
    assert kto["id"] in {it["id"] for it in free.kto}
    after = apply_review(free, db)
    assert kto["id"] not in {it["id"] for it in after.items()}
    assert len(after.items()) == len(free.items()) - 1


def test_decide_validates_its_input(tmp_path: Path) -> None:
    db = review_db(tmp_path)
    write = writer(db)
    result = held_result()
    sync_queue(result, db, write)
    ids = [it["id"] for it in result.needs_review]
    kto_id = next(it["id"] for it in result.needs_review if item_kind(it) == "kto")
    with pytest.raises(ValueError, match="decision"):
        decide(db, write, ids, "maybe", by="admin")
    with pytest.raises(ValueError, match="reviewer"):
        decide(db, write, ids, "approve", by=" ")
    with pytest.raises(LookupError, match="not in the review queue"):
        decide(db, write, [*ids, "nope"], "approve", by="admin")
    with pytest.raises(ValueError, match="exactly one"):
        decide(db, write, ids, "approve", by="admin", edited_payload={"messages": []})
    with pytest.raises(ValueError, match="keys"):
        decide(db, write, [kto_id], "approve", by="admin", edited_payload={"messages": []})
    with pytest.raises(ValueError, match="label"):
        bad = {
            "prompt": [{"role": "user", "content": "q"}],
            "completion": [{"role": "assistant", "content": "a"}],
        }
        decide(db, write, [kto_id], "approve", by="admin", edited_payload={**bad, "label": "yes"})
    assert counts(db)["pending"] == 5  # nothing half-applied


def test_works_with_the_real_store(tmp_path: Path) -> None:
    from feedback.store import Store

    with Store(tmp_path / "feedback.db", synchronous="NORMAL") as store:
        conv = store.create_conversation("ann")
        prompt = [{"role": "user", "content": "What is 2+2?"}]
        mid = store.record_message(conversation_id=conv, role="assistant", content="4", prompt=prompt)
        store.add_rating(message_id=mid, rater="ann", rating="down", tags=["hallucination"])
        result = curate(store.events(), CurationConfig(heldout_fraction=0.0))
        assert len(result.needs_review) == 1
        assert sync_queue(result, store, store.write) == 1
        decide(store, store.write, [result.needs_review[0]["id"]], "approve", by="admin")
        assert [it["label"] for it in apply_review(result, store).kto] == [False]


def test_bulk_approval_cannot_lift_a_rater_over_the_cap(tmp_path: Path) -> None:
    """A low-trust rater's items wait apart; approving them all still leaves them ≤ the cap."""
    db = review_db(tmp_path)
    write = writer(db)
    rng = random.Random(5)
    log = FeedbackLog()
    for i in range(6):  # mallory disagrees with everyone: low trust
        mid = log.answer(f"shared question {i}?", f"shared answer {i}")
        for rater in ("h1", "h2"):
            log.rate(mid, rater, "up")
        log.rate(mid, "mallory", "down")
    for i in range(40):
        log.rate(log.answer(words(rng, 6) + "?", words(rng, 10)), f"user{i % 8}", "up")
    for _ in range(60):
        log.rate(log.answer(words(rng, 6) + "?", "ZEBRA-7 " + words(rng, 10)), "mallory", "up")
    result = curate(log.events(), CurationConfig(heldout_fraction=0.0))
    assert result.report["raters"]["mallory"]["low_trust"] is True
    held = [it for it in result.needs_review if it["meta"]["raters"] == ["mallory"]]
    assert len(held) == 60  # capped apart, so not cut before a human saw them

    sync_queue(result, db, write)
    decide(db, write, [it["id"] for it in result.needs_review], "approve", by="hasty-admin")
    after = apply_review(result, db)
    share = sum(1 for it in after.kto if it["meta"]["raters"] == ["mallory"]) / len(after.kto)
    assert 0 < share <= 0.2
    assert any(d["filter"] == "rater_cap" and "mallory" in d["reason"] for d in after.dropped)
