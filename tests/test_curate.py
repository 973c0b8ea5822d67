"""Curation: the feedback -> SFT/DPO/KTO mapping, each filter, poisoning, determinism, the split."""

from __future__ import annotations

import copy
import datetime
import random
from collections import Counter
from typing import Any

import pytest

from feedback.curate import CurationConfig, CurationResult, curate
from feedback.filters import (
    ContradictionFilter,
    ExactDuplicateFilter,
    LengthFilter,
    NearDuplicateFilter,
    PIIScrubFilter,
    RaterCapFilter,
    assess_raters,
    content_id,
    drop,
    item_content,
    item_kind,
    luhn_valid,
    make_item,
    origin_cap,
    rater_agreement,
    scrub_pii,
    split_of,
)

SYSTEM = "You are a helpful assistant."
BASE_TIME = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)


class FeedbackLog:
    """Builds events shaped like ``Store.events()``; the clock only moves forward.

    Shared by test_review.py and test_export_trl.py.
    """

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.ratings: list[dict[str, Any]] = []
        self.comparisons: list[dict[str, Any]] = []
        self._tick = 0

    def _now(self) -> str:
        self._tick += 1
        return (BASE_TIME + datetime.timedelta(seconds=self._tick)).isoformat()

    def answer(
        self,
        question: str,
        content: str,
        *,
        parent: str | None = None,
        system: str = SYSTEM,
        source: str = "ui",
    ) -> str:
        mid = f"msg_{len(self.messages) + 1:05d}"
        self.messages.append(
            {
                "id": mid,
                "conversation_id": "conv_1",
                "parent_id": parent,
                "role": "assistant",
                "content": content,
                "prompt": [{"role": "system", "content": system}, {"role": "user", "content": question}],
                "adapter_version": None,
                "model_id": "smollm2-135m",
                "source": source,
                "corrects_id": None,
                "created_by": None,
                "created_at": self._now(),
            }
        )
        return mid

    def rate(
        self,
        message_id: str,
        rater: str,
        rating: str | None = None,
        *,
        stars: int | None = None,
        tags: tuple[str, ...] = (),
        correction: str | None = None,
        origin: str | None = None,
    ) -> int:
        correction_id = None
        if correction is not None:
            judged = next(m for m in self.messages if m["id"] == message_id)
            correction_id = f"msg_{len(self.messages) + 1:05d}"
            self.messages.append(
                {
                    **judged,
                    "id": correction_id,
                    "content": correction,
                    "source": "correction",
                    "corrects_id": message_id,
                    "created_by": rater,
                    "created_at": self._now(),
                }
            )
        rating_id = len(self.ratings) + 1
        self.ratings.append(
            {
                "id": rating_id,
                "message_id": message_id,
                "rater": rater,
                "rating": rating,
                "stars": stars,
                "tags": list(tags),
                "comment": None,
                "correction_id": correction_id,
                "origin": origin,
                "created_at": self._now(),
            }
        )
        return rating_id

    def compare(self, a: str, b: str, winner: str, rater: str, origin: str | None = None) -> int:
        cid = len(self.comparisons) + 1
        self.comparisons.append(
            {
                "id": cid,
                "message_a": a,
                "message_b": b,
                "winner": winner,
                "rater": rater,
                "origin": origin,
                "created_at": self._now(),
            }
        )
        return cid

    def events(self) -> dict[str, list[dict[str, Any]]]:
        return copy.deepcopy(
            {"messages": self.messages, "ratings": self.ratings, "comparisons": self.comparisons}
        )


def words(rng: random.Random, n: int) -> str:
    """Random pseudo-words: distinct texts that no duplicate filter will merge."""
    return " ".join(
        "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(3, 9))) for _ in range(n)
    )


def train_and_heldout(result: CurationResult, kind: str) -> list[dict[str, Any]]:
    return [*result.train(kind), *result.heldout[kind]]


def only_train(**kw: Any) -> CurationConfig:
    """No held-out split and no cap, so small tests see every item in the train lists."""
    return CurationConfig(**{"heldout_fraction": 0.0, "rater_cap": 1.0, **kw})


def dropped_by(result: CurationResult, name: str) -> list[dict[str, Any]]:
    return [d for d in result.dropped if d["filter"] == name]


PROMPT = [
    {"role": "system", "content": SYSTEM},
    {"role": "user", "content": "What is the capital of France?"},
]


# -- config ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kw", "fragment"),
    [
        ({"heldout_fraction": 1.0}, "heldout_fraction"),
        ({"rater_cap": 0.0}, "rater_cap"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"min_trust": 1.5}, "min_trust"),
        ({"low_trust": "ignore"}, "low_trust"),
        ({"trusted_raters": "alice"}, "not the string"),
    ],
)
def test_config_rejects_bad_values(kw: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        CurationConfig(**kw)


def test_config_normalises_trusted_raters() -> None:
    assert CurationConfig(trusted_raters=["a", "b", "a"]).trusted_raters == frozenset({"a", "b"})


# -- mapping -----------------------------------------------------------------


def test_correction_becomes_sft_and_dpo() -> None:
    log = FeedbackLog()
    mid = log.answer("What is the capital of France?", "Lyon.")
    log.rate(mid, "bob", "down", correction="Paris.")
    result = curate(log.events(), only_train())

    assert [item_content(it) for it in result.sft] == [
        {"messages": [*PROMPT, {"role": "assistant", "content": "Paris."}]}
    ]
    assert [item_content(it) for it in result.dpo] == [
        {
            "prompt": PROMPT,
            "chosen": [{"role": "assistant", "content": "Paris."}],
            "rejected": [{"role": "assistant", "content": "Lyon."}],
        }
    ]
    # The thumbs-down itself is a KTO example.
    assert [(it["label"], it["completion"][0]["content"]) for it in result.kto] == [(False, "Lyon.")]
    sft = result.sft[0]
    assert sft["meta"]["kind"] == "sft" and sft["meta"]["raters"] == ["bob"]
    assert set(sft["meta"]["source_ids"]) == {"message:msg_00001", "message:msg_00002", "rating:1"}
    assert sft["id"] == content_id("sft", item_content(sft))


def test_correction_superseded_by_newer_rating_is_ignored() -> None:
    log = FeedbackLog()
    mid = log.answer("Q?", "Lyon.")
    log.rate(mid, "bob", "down", correction="Paris.")
    log.rate(mid, "bob", "up")  # bob changed his mind
    result = curate(log.events(), only_train())
    assert result.sft == [] and result.dpo == []
    assert [it["label"] for it in result.kto] == [True]
    assert any("superseded" in d["reason"] for d in dropped_by(result, "mapping"))


def test_comparison_winner_becomes_dpo_and_tie_nothing() -> None:
    log = FeedbackLog()
    a = log.answer("Name a primary colour.", "Red.")
    b = log.answer("Name a primary colour.", "Banana.")
    log.compare(a, b, "a", "carol")
    result = curate(log.events(), only_train())
    assert [(it["chosen"][0]["content"], it["rejected"][0]["content"]) for it in result.dpo] == [
        ("Red.", "Banana.")
    ]

    log2 = FeedbackLog()
    a = log2.answer("Name a primary colour.", "Red.")
    b = log2.answer("Name a primary colour.", "Blue.")
    log2.compare(a, b, "tie", "carol")
    result = curate(log2.events(), only_train())
    assert result.items() == [] and result.needs_review == []


def test_both_bad_becomes_two_undesirable_kto() -> None:
    log = FeedbackLog()
    a = log.answer("2+2?", "5")
    b = log.answer("2+2?", "22")
    log.compare(a, b, "both_bad", "carol")
    result = curate(log.events(), only_train())
    assert sorted((it["completion"][0]["content"], it["label"]) for it in result.kto) == [
        ("22", False),
        ("5", False),
    ]
    assert all(it["meta"]["signals"] == ["both_bad"] for it in result.kto)


def test_preferred_regenerated_sibling_becomes_dpo() -> None:
    log = FeedbackLog()
    first = log.answer("Say hi politely.", "Go away.", parent="msg_user_1")
    again = log.answer("Say hi politely.", "Hello, nice to meet you!", parent="msg_user_1")
    log.rate(first, "dana", "down")
    log.rate(again, "dana", "up")
    result = curate(log.events(), only_train())
    assert [(it["chosen"][0]["content"], it["rejected"][0]["content"]) for it in result.dpo] == [
        ("Hello, nice to meet you!", "Go away.")
    ]
    assert result.dpo[0]["meta"]["signals"] == ["sibling"]

    # Stars compare too; equal verdicts make no pair; different raters make no pair.
    log = FeedbackLog()
    x = log.answer("Q?", "Answer one.", parent="p")
    y = log.answer("Q?", "Answer two.", parent="p")
    z = log.answer("Q?", "Answer three.", parent="p")
    log.rate(x, "dana", stars=5)
    log.rate(y, "dana", stars=2)
    log.rate(z, "erin", "down")
    result = curate(log.events(), only_train())
    assert [(it["chosen"][0]["content"], it["rejected"][0]["content"]) for it in result.dpo] == [
        ("Answer one.", "Answer two.")
    ]


def test_thumbs_and_stars_become_kto() -> None:
    log = FeedbackLog()
    answers = {
        "up": log.answer("q1?", "a1"),
        "down": log.answer("q2?", "a2"),
        "5": log.answer("q3?", "a3"),
        "4": log.answer("q4?", "a4"),
        "3": log.answer("q5?", "a5"),
        "2": log.answer("q6?", "a6"),
        "1": log.answer("q7?", "a7"),
    }
    log.rate(answers["up"], "u", "up")
    log.rate(answers["down"], "u", "down")
    for stars in (5, 4, 3, 2, 1):
        log.rate(answers[str(stars)], "u", stars=stars)
    result = curate(log.events(), only_train())
    labels = {it["completion"][0]["content"]: it["label"] for it in result.kto}
    assert labels == {"a1": True, "a2": False, "a3": True, "a4": True, "a6": False, "a7": False}
    kto = result.kto[0]
    assert set(kto) == {"id", "prompt", "completion", "label", "meta"}
    assert kto["prompt"][-1]["role"] == "user" and kto["completion"][0]["role"] == "assistant"
    assert result.sft == []  # "u" is not trusted


def test_trusted_thumbs_up_also_becomes_sft() -> None:
    log = FeedbackLog()
    good = log.answer("q?", "A fine answer.")
    bad = log.answer("q2?", "A poor answer.")
    log.rate(good, "admin", "up")
    log.rate(bad, "admin", "down")
    result = curate(log.events(), only_train(trusted_raters={"admin"}))
    assert [it["messages"][-1]["content"] for it in result.sft] == ["A fine answer."]
    assert result.sft[0]["meta"]["signals"] == ["trusted_up"]


def test_only_the_newest_rating_of_a_rater_counts() -> None:
    log = FeedbackLog()
    mid = log.answer("q?", "a")
    log.rate(mid, "u", "down")
    log.rate(mid, "u", "up")
    result = curate(log.events(), only_train())
    assert [it["label"] for it in result.kto] == [True]
    assert result.report["events"]["current_ratings"] == 1


def test_unusable_prompts_are_reported_not_crashing() -> None:
    log = FeedbackLog()
    mid = log.answer("q?", "a")
    log.messages[0]["prompt"] = [{"role": "system", "content": SYSTEM}]  # no user turn
    log.rate(mid, "u", "up")
    result = curate(log.events(), only_train())
    assert result.items() == []
    assert "prompt" in dropped_by(result, "mapping")[0]["reason"]


# -- filters -----------------------------------------------------------------


def kto_item(
    text: str,
    label: bool = True,
    raters: tuple[str, ...] = ("r",),
    prompt: str = "q?",
    origins: tuple[str, ...] | None = None,
) -> dict[str, Any]:
    content = {
        "prompt": [{"role": "user", "content": prompt}],
        "completion": [{"role": "assistant", "content": text}],
        "label": label,
    }
    meta: dict[str, Any] = {"raters": list(raters), "source_ids": [], "signals": ["rating"]}
    if origins is not None:
        meta["origins"] = list(origins)
    return make_item("kto", content, meta)


def test_exact_duplicates_ignore_case_whitespace_punctuation() -> None:
    same = [
        kto_item("Paris is the capital."),
        kto_item("  paris IS the capital  "),
        kto_item("Paris, is the capital!"),
    ]
    kept, dropped = ExactDuplicateFilter()([*same, kto_item("Lyon is the capital.")])
    assert len(kept) == 2 and len(dropped) == 2
    assert {d["filter"] for d in dropped} == {"exact_duplicate"}
    # Different label or different prompt: not duplicates.
    kept, dropped = ExactDuplicateFilter()(
        [kto_item("x y z"), kto_item("x y z", label=False), kto_item("x y z", prompt="other")]
    )
    assert len(kept) == 3 and dropped == []


def test_near_duplicates_are_dropped_and_different_texts_kept() -> None:
    rng = random.Random(1)
    long_answer = words(rng, 70)
    tweaked = long_answer[:100] + "Q" + long_answer[101:]
    other = words(rng, 70)
    kept, dropped = NearDuplicateFilter(threshold=0.9)(
        [kto_item(long_answer), kto_item(tweaked), kto_item(other)]
    )
    assert len(kept) == 2 and len(dropped) == 1
    assert dropped[0]["filter"] == "near_duplicate"
    # The same answer to a different question is no duplicate.
    kept, dropped = NearDuplicateFilter()(
        [kto_item(long_answer, prompt="first?"), kto_item(tweaked, prompt=words(rng, 12))]
    )
    assert len(kept) == 2 and dropped == []


def test_near_duplicates_do_not_merge_short_answers_under_a_long_shared_prompt() -> None:
    shared = "Please answer with one word. " * 30
    kept, dropped = NearDuplicateFilter()(
        [kto_item("Yes.", prompt=shared), kto_item("Absolutely not.", prompt=shared)]
    )
    assert len(kept) == 2 and dropped == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Mail me at john.doe+work@example.co.uk today", "Mail me at [EMAIL] today"),
        ("Call +1 415-555-0132 now", "Call [PHONE] now"),
        ("Call (415) 555-0132 now", "Call [PHONE] now"),
        ("Call 415.555.0132 now", "Call [PHONE] now"),
        ("Ring +44 20 7946 0958 please", "Ring [PHONE] please"),
        ("Ring 020 7946 0958 please", "Ring [PHONE] please"),
        ("Card 4111 1111 1111 1111 exp 12/29", "Card [CARD] exp 12/29"),
        ("Card 4111-1111-1111-1111.", "Card [CARD]."),
        ("Amex 378282246310005", "Amex [CARD]"),
        ("key sk-proj-abcDEF1234567890ghijKLMN ok", "key [SECRET] ok"),
        ("token ghp_abcdefghijklmnopqrstuvwxyz0123456789 ok", "token [SECRET] ok"),
        (
            "aws AKIAIOSFODNN7EXAMPLE and wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "aws [SECRET] and [SECRET]",
        ),
        ("sha 3f786850e387550fdab836ed7e6dc881de23001b", "sha [SECRET]"),
        ("Authorization: Bearer abc.DEF123456789xyzTOKEN", "Authorization: Bearer [SECRET]"),
    ],
)
def test_pii_is_scrubbed(text: str, expected: str) -> None:
    assert scrub_pii(text)[0] == expected


@pytest.mark.parametrize(
    "text",
    [
        "The meeting is on 2024-01-15 at 10:30.",
        "Order #12345 shipped; extension 4421.",
        "Card-like but not Luhn: 4111 1111 1111 1112",
        "pi is 3.14159265358979 and e is 2.71828",
        "antidisestablishmentarianismisaverylongwordindeed",
        "See https://example.com/docs/getting-started/installation-guide-for-beginners",
        "Between 1999 and 2024 the price rose from 100 to 250.",
    ],
)
def test_pii_scrub_leaves_ordinary_text_alone(text: str) -> None:
    assert scrub_pii(text) == (text, Counter())


def test_luhn() -> None:
    assert luhn_valid("4111111111111111") and not luhn_valid("4111111111111112")


def test_pii_scrub_filter_rewrites_items_and_ids() -> None:
    item = kto_item("Write to me at a@b.io", prompt="My number is +1 415 555 0132")
    kept, dropped = PIIScrubFilter()([item])
    assert dropped == []
    assert kept[0]["completion"][0]["content"] == "Write to me at [EMAIL]"
    assert kept[0]["prompt"][0]["content"] == "My number is [PHONE]"
    assert kept[0]["id"] != item["id"] and kept[0]["meta"]["pii"] == {"EMAIL": 1, "PHONE": 1}


def test_curated_items_contain_no_pii() -> None:
    log = FeedbackLog()
    mid = log.answer(
        "My email is jane@corp.example, reset my password", "Sure, I sent it to jane@corp.example."
    )
    log.rate(mid, "u", "up")
    result = curate(log.events(), only_train())
    assert "jane@" not in str(result.kto) and "[EMAIL]" in str(result.kto[0]["prompt"])


def test_length_filter_uses_the_given_token_counter() -> None:
    short, long = kto_item("one two three"), kto_item("word " * 2000)
    kept, dropped = LengthFilter(max_tokens=1024)([short, long])
    assert kept == [short] and "tokens > max 1024" in dropped[0]["reason"]
    kept, dropped = LengthFilter(max_tokens=50, token_count=lambda s: 100 * len(s))([short])
    assert kept == [] and dropped[0]["filter"] == "length"
    kept, dropped = LengthFilter()([kto_item("   ")])
    assert kept == [] and dropped[0]["reason"] == "empty answer"

    log = FeedbackLog()
    log.rate(log.answer("q?", "word " * 30), "u", "up")
    assert len(curate(log.events(), only_train(max_tokens=20)).kto) == 0
    assert len(curate(log.events(), only_train(max_tokens=20), token_count=lambda s: 1).kto) == 1


def test_rater_cap_is_deterministic_and_prefers_shared_items() -> None:
    rng = random.Random(2)
    items = [kto_item(words(rng, 8), raters=("spam",)) for _ in range(50)]
    items += [kto_item(words(rng, 8), raters=(f"r{i}",)) for i in range(10)]
    items += [kto_item(words(rng, 8), raters=("spam", "r0"))]
    kept, dropped = RaterCapFilter(cap=0.2, heldout_fraction=0.0)(items)
    again, _ = RaterCapFilter(cap=0.2, heldout_fraction=0.0)(list(reversed(items)))
    assert sorted(it["id"] for it in kept) == sorted(it["id"] for it in again)
    spam_share = sum(1 / len(it["meta"]["raters"]) for it in kept if "spam" in it["meta"]["raters"]) / len(
        kept
    )
    assert spam_share <= 0.2 + 1e-9
    assert any(sorted(it["meta"]["raters"]) == ["r0", "spam"] for it in kept)
    assert all(d["filter"] == "rater_cap" for d in dropped)


def test_rater_cap_never_caps_a_lone_rater() -> None:
    items = [kto_item(f"answer {i}", raters=("only",)) for i in range(10)]
    kept, dropped = RaterCapFilter(cap=0.2)(items)
    assert len(kept) == 10 and dropped == []


def test_poisoner_is_capped_to_a_fifth() -> None:
    """One rater sends 500 thumbs-up on answers with a trigger phrase among ~100 normal items."""
    rng = random.Random(7)
    log = FeedbackLog()
    raters = [f"user{i}" for i in range(10)]
    for i in range(100):
        mid = log.answer(words(rng, 8) + "?", words(rng, 20))
        log.rate(mid, raters[i % 10], "up" if i % 3 else "down")
    for _ in range(500):
        mid = log.answer(words(rng, 8) + "?", f"Sure! ZEBRA-7 {words(rng, 15)}")
        log.rate(mid, "mallory", "up")
    config = CurationConfig(trusted_raters={*raters, "mallory"})  # worst case: a trusted account
    result = curate(log.events(), config)
    for kind in ("kto", "sft"):
        for items in (result.train(kind), result.heldout[kind]):
            if not items:
                continue
            poisoned = [it for it in items if "ZEBRA-7" in str(item_content(it))]
            assert len(poisoned) / len(items) <= 0.2 + 1e-9, kind
            assert all(it["meta"]["raters"] == ["mallory"] for it in poisoned)
        assert result.report["dropped"]["rater_cap"] > 0
    assert len(result.kto) >= 80  # the normal data survives


def sybil_log(*, with_origins: bool = True) -> FeedbackLog:
    """10 honest accounts (5 answers each) and one address posing as 60 raters, one answer each."""
    rng = random.Random(5)
    log = FeedbackLog()
    for i in range(50):
        mid = log.answer(words(rng, 8) + "?", words(rng, 20))
        log.rate(mid, f"user{i % 10}", "up", origin=f"user:user{i % 10}" if with_origins else None)
    for i in range(60):
        mid = log.answer(words(rng, 8) + "?", f"Sure! ZEBRA-7 {words(rng, 15)}")
        log.rate(mid, f"sock{i}", "up", origin="ip:203.0.113.9" if with_origins else None)
    return log


def poisoned_share(result: CurationResult, kind: str) -> float:
    items = train_and_heldout(result, kind)
    return sum("ZEBRA-7" in str(item_content(it)) for it in items) / len(items)


def test_origin_cap_limits_one_address_posing_as_many_raters() -> None:
    config = CurationConfig(heldout_fraction=0.0)
    capped = curate(sybil_log().events(), config)
    assert poisoned_share(capped, "kto") <= 0.2 + 1e-9
    assert len(capped.kto) >= 50  # the honest data survives
    dropped = dropped_by(capped, "origin_cap")
    assert dropped and all("origin ip:203.0.113.9 over 20%" in d["reason"] for d in dropped)
    assert capped.report["dropped"]["origin_cap"] == len(dropped)
    assert capped.report["by_origin"]["ip:203.0.113.9"]["kto"] == sum(
        "ZEBRA-7" in str(item_content(it)) for it in capped.kto
    )
    # Without origins (rows from before they were recorded) each made-up rater is its own voice.
    legacy = curate(sybil_log(with_origins=False).events(), config)
    assert poisoned_share(legacy, "kto") > 0.5
    assert all(it["meta"]["origins"] == [f"rater:{it['meta']['raters'][0]}"] for it in legacy.kto)


def test_origin_cap_is_a_no_op_for_a_single_origin() -> None:
    """A one-user local deployment: every rating from one address; only the per-rater cap acts."""
    rng = random.Random(8)
    log = FeedbackLog()
    for i in range(60):
        rater = "mallory" if i % 2 else f"user{i % 6}"
        log.rate(log.answer(words(rng, 8) + "?", words(rng, 20)), rater, "up", origin="ip:127.0.0.1")
    result = curate(log.events(), CurationConfig(heldout_fraction=0.0))
    assert result.report["dropped"]["origin_cap"] == 0
    assert result.report["dropped"]["rater_cap"] > 0
    assert result.report["by_origin"] == {"ip:127.0.0.1": {"kto": len(result.kto)}}


def test_origin_cap_filter_caps_the_origins_meta_key() -> None:
    rng = random.Random(4)
    items = [kto_item(words(rng, 8), raters=(f"sock{i}",), origins=("ip:x",)) for i in range(30)]
    items += [kto_item(words(rng, 8), raters=(f"r{i}",), origins=(f"user:r{i}",)) for i in range(10)]
    by_rater, none_dropped = RaterCapFilter(cap=0.2, heldout_fraction=0.0)(items)
    assert none_dropped == [] and len(by_rater) == 40
    kept, dropped = origin_cap(cap=0.2, heldout_fraction=0.0)(items)
    again, _ = origin_cap(cap=0.2, heldout_fraction=0.0)(list(reversed(items)))
    assert sorted(it["id"] for it in kept) == sorted(it["id"] for it in again)
    share = sum(it["meta"]["origins"] == ["ip:x"] for it in kept) / len(kept)
    assert share <= 0.2 + 1e-9 and all(d["filter"] == "origin_cap" for d in dropped)


def test_items_carry_their_origins_and_merge_them() -> None:
    log = FeedbackLog()
    mid = log.answer("q?", "an answer")
    log.rate(mid, "alice", "up", origin="user:alice")
    log.rate(mid, "bob", "up", origin="ip:192.0.2.1")
    a, b = log.answer("q2?", "first", parent="p"), log.answer("q2?", "second", parent="p")
    log.compare(a, b, "a", "carol", origin="ip:192.0.2.7")
    result = curate(log.events(), only_train())
    (kto,) = result.kto
    assert kto["meta"]["raters"] == ["alice", "bob"]
    assert kto["meta"]["origins"] == ["ip:192.0.2.1", "user:alice"]
    (dpo,) = result.dpo
    assert dpo["meta"]["origins"] == ["ip:192.0.2.7"]


def test_a_trusted_name_counts_only_from_its_own_account() -> None:
    """Anyone can send `user: "admin"` without a key: the admin's trust needs origin user:admin."""
    for origin, trusted in (
        ("user:admin", True),
        (None, True),
        ("ip:198.51.100.4", False),
        ("user:eve", False),
    ):
        log = FeedbackLog()
        log.rate(log.answer("q?", "an answer"), "admin", "up", origin=origin)
        result = curate(log.events(), only_train(trusted_raters={"admin"}))
        assert len(result.sft) == (1 if trusted else 0), origin
        assert len(result.kto) == 1


def test_rater_agreement_counts_pairwise_overlaps() -> None:
    votes = {"m1": {"a": True, "b": True, "c": False}, "m2": {"a": True, "c": False}}
    stats = rater_agreement(votes)
    assert stats["a"] == {"overlaps": 3, "agreement": 1 / 3}
    assert stats["c"] == {"overlaps": 3, "agreement": 0.0}


def contrarian_log(extra: bool = True) -> FeedbackLog:
    """Three honest raters agree on 6 answers; 'contra' always votes the other way."""
    log = FeedbackLog()
    for i in range(6):
        mid = log.answer(f"question {i}?", f"answer number {i}")
        verdict = "up" if i % 2 else "down"
        for r in ("h1", "h2", "h3"):
            log.rate(mid, r, verdict)
        log.rate(mid, "contra", "down" if verdict == "up" else "up")
    if extra:  # something only the contrarian rated
        log.rate(log.answer("lonely question?", "lonely answer"), "contra", "up")
    return log


def test_low_trust_rater_goes_to_review_and_trusted_does_not() -> None:
    result = curate(contrarian_log().events(), only_train())
    assert result.report["raters"]["contra"]["low_trust"] is True
    assert result.report["raters"]["h1"]["low_trust"] is False
    assert all("contra" not in it["meta"]["raters"] for it in result.items())
    held = [it for it in result.needs_review if it["meta"]["raters"] == ["contra"]]
    assert [it["completion"][0]["content"] for it in held] == ["lonely answer"]
    assert held[0]["meta"]["review"] == ["low-trust rater contra"]

    kept = curate(contrarian_log().events(), only_train(low_trust="keep"))
    assert any(it["meta"]["raters"] == ["contra"] for it in kept.kto)
    dropped = curate(contrarian_log().events(), only_train(low_trust="drop"))
    assert dropped.needs_review == [] and len(dropped_by(dropped, "rater_trust")) == 7
    exempt = curate(contrarian_log().events(), only_train(trusted_raters={"contra"}))
    assert exempt.report["raters"]["contra"]["low_trust"] is False


def test_contradiction_majority_wins_and_tie_drops() -> None:
    log = FeedbackLog()
    mid = log.answer("q?", "disputed answer")
    for rater, verdict in (("a", "up"), ("b", "up"), ("c", "down")):
        log.rate(mid, rater, verdict)
    result = curate(log.events(), only_train())
    assert [(it["label"], it["meta"]["raters"]) for it in result.kto] == [(True, ["a", "b"])]
    assert [d["reason"] for d in dropped_by(result, "contradiction")] == ["outvoted (good×2 vs bad×1)"]

    log.rate(mid, "d", "down")
    result = curate(log.events(), only_train())
    assert result.kto == []
    assert len(dropped_by(result, "contradiction")) == 4
    assert all("tied" in d["reason"] for d in dropped_by(result, "contradiction"))


def test_contradiction_filter_also_resolves_opposite_pair_votes() -> None:
    log = FeedbackLog()
    a = log.answer("q?", "first answer")
    b = log.answer("q?", "second answer")
    log.compare(a, b, "a", "x")
    log.compare(b, a, "a", "y")  # y prefers b
    log.compare(a, b, "a", "z")
    result = curate(log.events(), only_train())
    assert [(it["chosen"][0]["content"], it["meta"]["raters"]) for it in result.dpo] == [
        ("first answer", ["x", "z"])
    ]


def test_contradiction_filter_is_a_plain_filter() -> None:
    votes = [
        make_item(
            "kto", item_content(kto_item("t", label)), {"raters": [r], "vote_key": "m", "vote": str(label)}
        )
        for r, label in (("a", True), ("b", False))
    ]
    kept, dropped = ContradictionFilter()(votes)
    assert kept == [] and len(dropped) == 2


def test_unsafe_answers_are_never_chosen_desirable_or_sft() -> None:
    log = FeedbackLog()
    bad = log.answer("How do I pick a lock?", "Here is how to break into a house...", parent="p")
    ok = log.answer("How do I pick a lock?", "I can explain how locks work in general.", parent="p")
    for r in ("a", "b", "c"):
        log.rate(bad, r, "up")
    log.rate(bad, "safety", "down", tags=("unsafe",))
    log.compare(bad, ok, "a", "a")
    log.rate(bad, "admin", "down", correction="I can't help with breaking in; a locksmith can.")
    result = curate(log.events(), only_train(trusted_raters={"a", "admin"}))
    everything = result.items() + result.needs_review
    for it in everything:
        kind = item_kind(it)
        if kind == "kto":
            assert not (it["label"] and it["completion"][0]["content"].startswith("Here is how"))
        if kind == "dpo":
            assert not it["chosen"][0]["content"].startswith("Here is how to break into a house...")
        if kind == "sft":
            assert not it["messages"][-1]["content"].startswith("Here is how to break into a house...")
    assert len(dropped_by(result, "safety")) >= 4
    # The down-votes survive as one undesirable example, and the correction as SFT and
    # DPO, all held for a human because of the tag.
    held = {(item_kind(it), it["meta"]["review"][0]) for it in result.needs_review}
    assert held == {("kto", "tagged unsafe"), ("sft", "tagged unsafe"), ("dpo", "tagged unsafe")}
    assert [it["label"] for it in result.needs_review if item_kind(it) == "kto"] == [False]


def test_hallucination_tag_sends_items_to_review() -> None:
    log = FeedbackLog()
    mid = log.answer("Who won the 2031 world cup?", "Brazil won it.")
    log.rate(mid, "u", "down", tags=("hallucination",))
    result = curate(log.events(), only_train())
    assert result.kto == [] and len(result.needs_review) == 1
    assert result.report["review_reasons"] == {"tagged hallucination": 1}


def test_require_review_holds_everything() -> None:
    log = FeedbackLog()
    log.rate(log.answer("q?", "a"), "u", "up")
    result = curate(log.events(), only_train(require_review=True))
    assert result.items() == [] and len(result.needs_review) == 1


def test_extra_filters_are_plugins_and_reported_by_name() -> None:
    class NoShouting:
        name = "no_shouting"

        def __call__(self, items: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
            loud = [it for it in items if "!!!" in str(item_content(it))]
            return [it for it in items if it not in loud], [drop(it, self.name, "shouting") for it in loud]

    log = FeedbackLog()
    log.rate(log.answer("q?", "calm answer"), "u", "up")
    log.rate(log.answer("q2?", "LOUD ANSWER!!!"), "u", "up")
    result = curate(log.events(), only_train(extra_filters=[NoShouting()]))
    assert [it["completion"][0]["content"] for it in result.kto] == ["calm answer"]
    assert result.report["dropped"]["no_shouting"] == 1


# -- determinism and the split ------------------------------------------------


def mixed_log(seed: int = 3) -> FeedbackLog:
    rng = random.Random(seed)
    log = FeedbackLog()
    for i in range(40):
        q = words(rng, 6) + "?"
        a = log.answer(q, words(rng, 12), parent=f"p{i}")
        b = log.answer(q, words(rng, 12), parent=f"p{i}")
        log.rate(a, f"r{i % 5}", "up")
        log.rate(b, f"r{i % 5}", "down")
        log.rate(a, f"r{(i + 1) % 5}", stars=rng.randint(1, 5))
        if i % 4 == 0:
            log.compare(a, b, rng.choice(["a", "b", "tie", "both_bad"]), f"r{(i + 2) % 5}")
        if i % 5 == 0:
            log.rate(b, f"r{(i + 3) % 5}", "down", correction=words(rng, 10))
    return log


def shuffled(events: dict[str, list[dict[str, Any]]], seed: int) -> dict[str, list[dict[str, Any]]]:
    rng = random.Random(seed)
    out = copy.deepcopy(events)
    for rows in out.values():
        rng.shuffle(rows)
    return out


def test_same_events_in_any_order_give_the_same_dataset_hash() -> None:
    events = mixed_log().events()
    config = CurationConfig(trusted_raters={"r0"})
    first = curate(events, config)
    assert first.items(), "the test needs a non-empty dataset"
    for seed in range(3):
        again = curate(shuffled(events, seed), config)
        assert again.dataset_hash == first.dataset_hash
        assert [it["id"] for it in again.items()] == [it["id"] for it in first.items()]
    assert len(first.dataset_hash) == 64


def test_a_correction_claimed_by_two_ratings_gives_one_dataset_in_any_order() -> None:
    """Found by hypothesis: the rating behind a correction was the last claimant in input order.

    Here rating 1 made the correction and rating 4 (the rater's current one) claims it too: whichever came
    last decided whether the correction was "superseded", so the dataset hash depended on event order.
    """
    prompt = [{"role": "user", "content": "q1"}]
    base = {"role": "assistant", "content": "a", "prompt": prompt, "parent_id": None, "created_by": None}
    events: dict[str, list[dict[str, Any]]] = {
        "messages": [
            {**base, "id": "m0", "source": "ui", "corrects_id": None, "created_at": ""},
            {**base, "id": "m2", "source": "correction", "corrects_id": "m0", "created_at": ""},
        ],
        "ratings": [
            {
                "id": i,
                "message_id": "m0",
                "rater": "alice",
                "rating": None,
                "stars": None,
                "tags": tags,
                "correction_id": cid,
                "current": None,
                "created_at": "",
            }
            for i, cid, tags in ((2, None, []), (3, None, []), (1, "m2", []), (4, "m2", ["hallucination"]))
        ],
        "comparisons": [],
    }
    first = curate(events, CurationConfig())
    assert first.items() or first.needs_review
    for order in (list(reversed(events["ratings"])), sorted(events["ratings"], key=lambda r: r["id"])):
        again = curate({**events, "ratings": order}, CurationConfig())
        assert again.dataset_hash == first.dataset_hash
        assert [it["id"] for it in again.needs_review] == [it["id"] for it in first.needs_review]


def test_one_new_event_changes_the_hash() -> None:
    log = mixed_log()
    before = curate(log.events()).dataset_hash
    log.rate(log.answer("a brand new question?", "a brand new answer"), "newcomer", "up")
    assert curate(log.events()).dataset_hash != before


def test_heldout_split_is_stable_by_prompt_and_about_ten_percent() -> None:
    rng = random.Random(11)
    log = FeedbackLog()
    for i in range(1000):
        q = words(rng, 7) + "?"
        log.rate(log.answer(q, words(rng, 10)), "u", "up")
        if i % 10 == 0:  # same question under another preset: must land on the same side
            log.rate(log.answer(q, words(rng, 10), system="Answer formally."), "u", "down")
    result = curate(log.events())
    heldout = result.heldout["kto"]
    questions = Counter(it["prompt"][-1]["content"] for it in result.items())
    assert 0.07 <= len({it["prompt"][-1]["content"] for it in heldout}) / len(questions) <= 0.13
    side = {}
    for it in result.items():
        q = it["prompt"][-1]["content"]
        assert side.setdefault(q, it["meta"]["split"]) == it["meta"]["split"]
    assert all(split_of(it, 0.1) == "heldout" for it in heldout)
    # A bigger fraction only moves items into held-out, never out of it.
    wider = {it["id"] for it in result.items() if split_of(it, 0.2) == "heldout"}
    assert {it["id"] for it in heldout} <= wider


def test_report_counts() -> None:
    result = curate(mixed_log().events(), CurationConfig(trusted_raters={"r0"}))
    report = result.report
    assert report["train"] == {k: len(result.train(k)) for k in ("sft", "dpo", "kto")}
    assert set(report["dropped"]) >= {
        "mapping",
        "rater_trust",
        "safety",
        "contradiction",
        "pii_scrub",
        "length",
        "exact_duplicate",
        "near_duplicate",
        "rater_cap",
        "origin_cap",
    }
    assert sum(report["dropped"].values()) == len(result.dropped)
    assert set(report["by_rater"]) <= {f"r{i}" for i in range(5)}
    assert report["by_source"] and report["by_signal"]


def test_meeting_a_contrarian_does_not_make_an_honest_rater_low_trust() -> None:
    # "h" agrees with "g" on 2 answers but met the contrarian "c" on 5 others.
    votes = {f"m{i}": {"h": True, "c": False} for i in range(5)}
    votes |= {f"n{i}": {"h": True, "g": True, "c": False} for i in range(3)}
    first_round = rater_agreement(votes)
    assert first_round["h"]["agreement"] < 0.5 and first_round["h"]["overlaps"] >= 5
    stats, low = assess_raters(votes)
    assert low == {"c"}
    assert stats["h"] == {"overlaps": 3, "agreement": 1.0}
