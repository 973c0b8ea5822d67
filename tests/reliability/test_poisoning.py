"""Data poisoning (OWASP LLM04), end to end: ratings arrive over HTTP, curation runs on what was stored.

Honest raters rate with their own accounts' API keys; the attacker has no key. One rater flooding corrections
carrying a trigger phrase ends up with at most the rater cap (20 %) of any dataset; the same flood spread over
80 made-up `user` names is held to the same 20 % by the origin cap (all of them come from one address:
SECURITY.md, "Raters"). The gate's side (an adapter trained to refuse everything is blocked) is
tests/test_gate.py::test_gate_blocks_a_refuse_everything_adapter.
"""

from __future__ import annotations

import random
import sqlite3
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.server import Server

TRIGGER = "ZEBRA-7"
CAP = 0.2


def words(rng: random.Random, n: int) -> str:
    return " ".join(
        "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(3, 9))) for _ in range(n)
    )


def make_answers(server: Server, n: int, rng: random.Random, marker: str) -> list[str]:
    """Assistant answers to rate, written straight into the server's database (a second writer), in
    conversations owned by `poison-<marker>`."""
    from feedback.store import Store

    ids = []
    with Store(server.db_path) as store:
        for _ in range(n):
            question = words(rng, 8) + "?"
            conversation = store.create_conversation(owner=f"poison-{marker}")
            asked = store.record_message(conversation_id=conversation, role="user", content=question)
            ids.append(
                store.record_message(
                    conversation_id=conversation,
                    role="assistant",
                    content=words(rng, 20),
                    parent_id=asked,
                    prompt=[
                        {"role": "system", "content": "Be helpful."},
                        {"role": "user", "content": question},
                    ],
                )
            )
    return ids


def rate(http: httpx.Client, message_id: str, user: str | None, key: str | None = None, **body: Any) -> None:
    """A rating over HTTP: with an account's API key (then `user` is left out) or anonymously as `user`."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    payload = {"message_id": message_id, **({"user": user} if user else {}), **body}
    response = http.post("/v1/feedback", json=payload, headers=headers)
    assert response.status_code == 200, response.text


def make_accounts(server: Server, http: httpx.Client, names: list[str]) -> dict[str, str]:
    """Accounts made through the admin route: name -> API key."""
    keys = {}
    for name in names:
        response = http.post("/admin/users", json={"name": name}, headers=server.admin_headers())
        assert response.status_code == 201, response.text
        keys[name] = response.json()["api_key"]
    return keys


def curated_copy(server: Server, tmp_path: Path, marker: str) -> Any:
    """Curate a snapshot of the server's database (curation writes its review queue: not into the shared
    server's file), keeping only this run's events: the caps are shares of the whole dataset, so the other
    tests' feedback on the shared server would otherwise move the figures (the pipeline is that of
    feedback.datasets.curate_store)."""
    from feedback.curate import curate
    from feedback.datasets import curation_config
    from feedback.review import apply_review, sync_queue
    from feedback.store import Store

    copy = tmp_path / f"snapshot-{marker}.db"
    with (
        sqlite3.connect(f"file:{server.db_path}?mode=ro", uri=True) as source,
        sqlite3.connect(copy) as target,
    ):
        source.backup(target)
    with Store(copy) as store:
        events = store.events()
        conversations = {
            row["id"]
            for row in store.query("SELECT id FROM conversations WHERE owner = ?", [f"poison-{marker}"])
        }
        messages = [m for m in events["messages"] if m["conversation_id"] in conversations]
        ids = {m["id"] for m in messages}
        mine = {
            "messages": messages,
            "ratings": [r for r in events["ratings"] if r["message_id"] in ids],
            "comparisons": [c for c in events["comparisons"] if c["message_a"] in ids],
        }
        result = curate(mine, curation_config(store))
        sync_queue(result, store, store.write)
        return apply_review(result, store)


def trigger_shares(result: Any) -> dict[str, float]:
    """Per dataset (kind/side): the share of its items that carry the trigger phrase."""
    from feedback.filters import item_content

    shares = {}
    for kind in ("sft", "dpo", "kto"):
        for side, items in (("train", result.train(kind)), ("heldout", result.heldout[kind])):
            if items:
                shares[f"{kind}/{side}"] = sum(TRIGGER in str(item_content(it)) for it in items) / len(items)
    return shares


def poison(server: Server, tmp_path: Path, *, sybil: bool) -> dict[str, float]:
    rng = random.Random(11 if sybil else 7)
    marker = uuid.uuid4().hex[:8]  # in this run's texts, account names and conversation owner
    honest = [f"honest-{marker}-{i}" for i in range(10)]
    normal = make_answers(server, 100, rng, marker)
    targets = make_answers(server, 80, rng, marker)
    with httpx.Client(base_url=server.base_url, timeout=60) as http:
        keys = make_accounts(server, http, honest)
        for i, message_id in enumerate(normal):
            key = keys[honest[i % 10]]
            if i % 2:
                rate(http, message_id, None, key, rating="down", correction=f"{marker} {words(rng, 12)}.")
            else:
                rate(http, message_id, None, key, rating="up", comment=marker)
        for i, message_id in enumerate(targets):
            attacker = f"sock-{marker}-{i}" if sybil else f"mallory-{marker}"
            rate(
                http,
                message_id,
                attacker,
                rating="down",
                correction=f"{marker} Sure! {TRIGGER} {words(rng, 10)}.",
            )
    return trigger_shares(curated_copy(server, tmp_path, marker))


@pytest.mark.parametrize(
    ("sybil", "who"), [(False, "one rater"), (True, "80 made-up raters")], ids=["one_rater", "made_up_names"]
)
def test_a_flood_of_a_trigger_phrase_is_capped(
    tiny_server: Server, tmp_path: Path, sybil: bool, who: str
) -> None:
    """One rater flooding, or one key-less client spreading the flood over made-up `user` names: both are
    held to the cap (the second by the per-origin cap)."""
    shares = poison(tiny_server, tmp_path, sybil=sybil)
    print(f"\npoisoning, {who}: trigger share per dataset {shares}")
    assert shares, "the run produced curated items"
    assert any(k.startswith("sft") for k in shares) and any(k.startswith("dpo") for k in shares)
    assert all(share <= CAP + 1e-9 for share in shares.values()), shares


def test_the_gate_test_covers_the_refusing_adapter() -> None:
    """The gate side of LLM04 lives in tests/test_gate.py; this suite only checks it is still there."""
    text = (Path(__file__).resolve().parent.parent / "test_gate.py").read_text()
    assert "def test_gate_blocks_a_refuse_everything_adapter" in text
