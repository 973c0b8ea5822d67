"""Data poisoning (OWASP LLM04), end to end: ratings arrive over HTTP, curation runs on what was stored.

A rater who floods corrections and 👍 carrying a trigger phrase ends up with at most the rater cap (20 %)
of any dataset. The same flood spread over self-declared `user` names is *not* capped: that gap is pinned
by a strict xfail (SECURITY.md, "Raters"). The gate's side (an adapter trained to refuse everything is
blocked) is tests/test_gate.py::test_gate_blocks_a_refuse_everything_adapter.
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


def make_answers(server: Server, n: int, rng: random.Random) -> list[str]:
    """Assistant answers to rate, written straight into the server's database (a second writer)."""
    from feedback.store import Store

    ids = []
    with Store(server.db_path) as store:
        for _ in range(n):
            question = words(rng, 8) + "?"
            conversation = store.create_conversation(owner="poison-test")
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


def rate(http: httpx.Client, message_id: str, user: str, **body: Any) -> None:
    response = http.post("/v1/feedback", json={"message_id": message_id, "user": user, **body})
    assert response.status_code == 200, response.text


def curated_copy(server: Server, tmp_path: Path, marker: str) -> Any:
    """Curate a snapshot of the server's database (curation writes its review queue: not into the shared
    server's file), keeping only this test's items."""
    from feedback.datasets import curate_store, curation_config
    from feedback.store import Store

    copy = tmp_path / f"snapshot-{marker}.db"
    with (
        sqlite3.connect(f"file:{server.db_path}?mode=ro", uri=True) as source,
        sqlite3.connect(copy) as target,
    ):
        source.backup(target)
    with Store(copy) as store:
        return curate_store(store, curation_config(store))


def trigger_shares(result: Any, marker: str) -> dict[str, float]:
    from feedback.filters import item_content

    shares = {}
    for kind in ("sft", "dpo", "kto"):
        for side, items in (("train", result.train(kind)), ("heldout", result.heldout[kind])):
            mine = [it for it in items if marker in str(item_content(it))]
            if mine:
                shares[f"{kind}/{side}"] = sum(TRIGGER in str(item_content(it)) for it in mine) / len(mine)
    return shares


def poison(server: Server, tmp_path: Path, *, sybil: bool) -> dict[str, float]:
    rng = random.Random(11 if sybil else 7)
    marker = uuid.uuid4().hex[:8]  # in every text of this run: tells its items from other tests'
    honest = [f"honest-{marker}-{i}" for i in range(10)]
    normal = make_answers(server, 100, rng)
    targets = make_answers(server, 80, rng)
    with httpx.Client(base_url=server.base_url, timeout=60) as http:
        for i, message_id in enumerate(normal):
            if i % 2:
                rate(
                    http, message_id, honest[i % 10], rating="down", correction=f"{marker} {words(rng, 12)}."
                )
            else:
                rate(http, message_id, honest[i % 10], rating="up", comment=marker)
        for i, message_id in enumerate(targets):
            attacker = f"sock-{marker}-{i}" if sybil else f"mallory-{marker}"
            rate(
                http,
                message_id,
                attacker,
                rating="down",
                correction=f"{marker} Sure! {TRIGGER} {words(rng, 10)}.",
            )
    return trigger_shares(curated_copy(server, tmp_path, marker), marker)


def test_a_rater_flooding_a_trigger_phrase_is_capped(tiny_server: Server, tmp_path: Path) -> None:
    shares = poison(tiny_server, tmp_path, sybil=False)
    print(f"\npoisoning, one rater: trigger share per dataset {shares}")
    assert shares, "the run produced curated items"
    assert any(k.startswith("sft") for k in shares) and any(k.startswith("dpo") for k in shares)
    assert all(share <= CAP + 1e-9 for share in shares.values()), shares


@pytest.mark.xfail(
    strict=True,
    reason="known gap: API raters are the self-declared `user` field (and UI "
    "raters fresh anonymous sessions), so one client posing as many raters escapes the "
    "per-rater cap; see SECURITY.md",
)
def test_a_flood_spread_over_made_up_user_names_is_capped(tiny_server: Server, tmp_path: Path) -> None:
    shares = poison(tiny_server, tmp_path, sybil=True)
    print(f"\npoisoning, 80 made-up raters: trigger share per dataset {shares}")
    assert all(share <= CAP + 1e-9 for share in shares.values()), shares


def test_the_gate_test_covers_the_refusing_adapter() -> None:
    """The gate side of LLM04 lives in tests/test_gate.py; this suite only checks it is still there."""
    text = (Path(__file__).resolve().parent.parent / "test_gate.py").read_text()
    assert "def test_gate_blocks_a_refuse_everything_adapter" in text
