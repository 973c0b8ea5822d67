"""Canary routing (share, stickiness) and the canary monitor's decisions on simulated ratings."""

from __future__ import annotations

import random

import pytest

from assistant.engine import BASE
from assistant.routing import (
    CanaryMonitor,
    VersionInUseError,
    VersionRouter,
    canary_bucket,
    prob_beta_below_half,
    prob_beta_less,
    two_proportion_z,
)
from feedback.store import Store
from tests.test_registry import *  # noqa: F403  (fixtures: store, registry, make, ...)
from tests.test_registry import wait_for
from training.registry import Registry


def simulate(store: Store, version: str | None, up: int, down: int) -> list[str]:
    """`up` 👍 and `down` 👎 answers from `version` (None: base), one conversation and rater each."""
    ids = []
    for i in range(up + down):
        conversation = store.create_conversation(owner=f"user{i}")
        message = store.record_message(conversation_id=conversation, role="assistant", content=f"answer {i}",
                                       adapter_version=version, source="ui")
        store.add_rating(message_id=message, rater=f"user{i}", rating="up" if i < up else "down")
        ids.append(message)
    return ids


def vote(store: Store, canary: str, live: str | None, canary_wins: int, live_wins: int) -> None:
    """A/B votes between an answer of each version."""
    for i in range(canary_wins + live_wins):
        conversation = store.create_conversation(owner=f"voter{i}")
        a = store.record_message(conversation_id=conversation, role="assistant", content="a",
                                 adapter_version=canary, source="compare")
        b = store.record_message(conversation_id=conversation, role="assistant", content="b",
                                 adapter_version=live, source="compare")
        store.add_comparison(message_a=a, message_b=b, winner="a" if i < canary_wins else "b",
                             rater=f"voter{i}")


# ---------------------------------------------------------------------------- routing
def test_canary_share_is_within_tolerance_and_sticky(registry: Registry, tiny_engine, make) -> None:  # type: ignore[no-untyped-def]
    router = VersionRouter(registry, tiny_engine)
    make("v0001")
    make("v0002", parent="v0001")
    router.promote("v0001")
    router.start_canary("v0002", 0.2)
    ids = [f"conv-{i}" for i in range(2000)]
    first = [router.version_for(c) for c in ids]
    share = sum(v == "v0002" for v in first) / len(ids)
    assert 0.17 <= share <= 0.23
    assert set(first) == {None, "v0002"}  # None: the engine's live version (v0001)
    assert [router.version_for(c) for c in ids] == first  # sticky
    # Deterministic: another router (a restarted server) puts every conversation in the same place.
    other = VersionRouter(registry, tiny_engine)
    assert [other.version_for(c) for c in ids] == first
    # First turns (no conversation id yet) are drawn with the same odds.
    drawn = sum(router.version_for(None) == "v0002" for _ in range(4000)) / 4000
    assert 0.16 <= drawn <= 0.24


def test_conversation_stays_on_the_version_that_answered(store: Store, registry: Registry, tiny_engine,  # type: ignore[no-untyped-def]
                                                       make) -> None:
    router = VersionRouter(registry, tiny_engine)
    make("v0002")
    router.start_canary("v0002", 0.5)
    to_canary = next(c for c in (f"c{i}" for i in range(100)) if canary_bucket(c, "v0002") < 0.5)
    to_live = next(c for c in (f"c{i}" for i in range(100)) if canary_bucket(c, "v0002") >= 0.5)
    # A conversation begun on live before (or outside) the canary stays on live, and vice versa.
    for conversation, answered_by in ((to_canary, None), (to_live, "v0002")):
        store.create_conversation(owner="u", id=conversation)
        store.record_message(conversation_id=conversation, role="assistant", content="hi",
                             adapter_version=answered_by)
    assert router.version_for(to_canary) is None
    assert router.version_for(to_live) == "v0002"


def test_stop_canary_sends_everyone_to_live(registry: Registry, tiny_engine, make) -> None:  # type: ignore[no-untyped-def]
    router = VersionRouter(registry, tiny_engine)
    make("v0002")
    router.start_canary("v0002", 1.0)
    assert router.version_for("x") == "v0002"
    with pytest.raises(VersionInUseError):
        router.unload("v0002")
    router.stop_canary(by="alice")
    assert router.version_for("x") is None and router.version_for(None) is None
    assert registry.canary() == (None, 0.0)
    assert registry.get("v0002")["status"] == "candidate"  # type: ignore[index]
    assert wait_for(lambda: "v0002" not in tiny_engine.loaded_versions)


def test_canary_of_the_live_version_is_refused(registry: Registry, make) -> None:  # type: ignore[no-untyped-def]
    router = VersionRouter(registry, None)
    make("v0001")
    router.promote("v0001")
    with pytest.raises(VersionInUseError):
        router.start_canary("v0001", 0.2)


def test_promoting_the_canary_ends_it(registry: Registry, tiny_engine, make) -> None:  # type: ignore[no-untyped-def]
    router = VersionRouter(registry, tiny_engine)
    make("v0001")
    router.start_canary("v0001", 0.2)
    router.promote("v0001")
    assert tiny_engine.live_version == "v0001"
    assert router.canary_version is None and registry.canary() == (None, 0.0)
    latest = {(h["name"], h["version"]) for h in registry.history()[:2]}
    assert latest == {("live", "v0001"), ("canary", None)}


def test_chat_turns_are_routed_and_recorded(store: Store, registry: Registry, tiny_engine, make,  # type: ignore[no-untyped-def]
                                            tmp_path) -> None:
    from assistant.chat import start_turn
    from assistant.context import AppContext
    from assistant.engine import SamplingParams
    from assistant.settings import Settings

    router = VersionRouter(registry, tiny_engine)
    make("v0002")
    router.start_canary("v0002", 1.0)
    ctx = AppContext(settings=Settings(data_dir=tmp_path), engine=tiny_engine, store=store,
                     model_dir=tmp_path, model_id="tiny", extras={"router": router})
    messages = [{"role": "user", "content": "hi"}]
    turn = start_turn(ctx, messages, SamplingParams(max_tokens=4, temperature=0.0), owner="u", source="ui")
    turn.text()
    assert turn.version == "v0002"
    stored = store.get_message(turn.message_id)
    assert stored is not None and stored["adapter_version"] == "v0002"
    router.stop_canary()
    turn = start_turn(ctx, messages, SamplingParams(max_tokens=4, temperature=0.0), owner="u", source="ui")
    turn.text()
    assert turn.version == BASE


# ---------------------------------------------------------------------------- statistics
def test_beta_probabilities_match_simulation() -> None:
    rng = random.Random(0)
    a1, b1, a2, b2 = 12, 20, 25, 10
    draws = sum(rng.betavariate(a1, b1) < rng.betavariate(a2, b2) for _ in range(20000)) / 20000
    assert prob_beta_less(a1, b1, a2, b2) == pytest.approx(draws, abs=0.02)
    assert prob_beta_less(5, 5, 5, 5) == pytest.approx(0.5, abs=1e-9)
    below = sum(rng.betavariate(8, 14) < 0.5 for _ in range(20000)) / 20000
    assert prob_beta_below_half(8, 14) == pytest.approx(below, abs=0.02)
    assert prob_beta_below_half(6, 6) == pytest.approx(0.5)
    z, p = two_proportion_z(10, 40, 32, 40)
    assert z < -4 and p < 0.001


# ---------------------------------------------------------------------------- the monitor
def test_no_decision_below_the_minimum_sample(store: Store, registry: Registry, make) -> None:  # type: ignore[no-untyped-def]
    router = VersionRouter(registry, None)
    make("v0002")
    monitor = CanaryMonitor(store, registry, router, min_samples=30, auto=True)
    assert monitor.check()["decision"] == "none"
    router.start_canary("v0002", 0.2)
    simulate(store, "v0002", 0, 20)  # terrible, but only 20 ratings
    simulate(store, None, 20, 0)
    report = monitor.check()
    assert report["decision"] == "wait" and not report["applied"]
    assert "need ≥ 30" in report["reason"]
    assert router.canary_version == "v0002"


def test_auto_rollback_when_the_canary_is_clearly_worse(store: Store, registry: Registry, tiny_engine,  # type: ignore[no-untyped-def]
                                                       make) -> None:
    router = VersionRouter(registry, tiny_engine)
    make("v0001")
    make("v0002", parent="v0001")
    router.promote("v0001")
    simulate(store, "v0002", 0, 40)  # before the canary started: not counted
    router.start_canary("v0002", 0.2)
    simulate(store, "v0002", 12, 28)
    simulate(store, "v0001", 30, 10)
    monitor = CanaryMonitor(store, registry, router, min_samples=30, auto=False)
    report = monitor.check()
    assert report["decision"] == "rollback" and not report["applied"]
    assert report["thumbs"]["canary"]["n"] == 40 and report["thumbs"]["p_canary_worse"] > 0.99
    assert router.canary_version == "v0002"  # auto off: only reported

    monitor.auto = True
    report = monitor.check()
    assert report["applied"]
    assert router.canary_version is None and registry.canary() == (None, 0.0)
    assert registry.get("v0002")["status"] == "rejected"  # type: ignore[index]
    assert tiny_engine.live_version == "v0001"
    assert registry.history("canary")[0]["by"] == "canary-monitor"


def test_auto_promote_when_the_canary_is_clearly_better(store: Store, registry: Registry, make) -> None:  # type: ignore[no-untyped-def]
    router = VersionRouter(registry, None)
    make("v0002")
    router.start_canary("v0002", 0.2)
    simulate(store, "v0002", 34, 6)
    simulate(store, None, 15, 25)  # the base model is live
    report = CanaryMonitor(store, registry, router, auto=True).check()
    assert report["decision"] == "promote" and report["applied"]
    assert registry.live() == "v0002" and registry.canary() == (None, 0.0)


def test_auto_promote_still_needs_the_gate(store: Store, registry: Registry, make) -> None:  # type: ignore[no-untyped-def]
    router = VersionRouter(registry, None)
    make("v0002", gate=False)
    router.start_canary("v0002", 0.2, force=True)
    simulate(store, "v0002", 38, 2)
    simulate(store, None, 15, 25)
    report = CanaryMonitor(store, registry, router, auto=True).check()
    assert report["decision"] == "promote" and not report["applied"]
    assert "gate" in report["error"] and registry.live() is None


def test_ab_votes_can_roll_back(store: Store, registry: Registry, make) -> None:  # type: ignore[no-untyped-def]
    router = VersionRouter(registry, None)
    make("v0002")
    router.start_canary("v0002", 0.2)
    vote(store, "v0002", None, canary_wins=8, live_wins=27)
    report = CanaryMonitor(store, registry, router, auto=True).check()
    assert report["ab"]["canary"] == 8 and report["ab"]["live"] == 27
    assert report["decision"] == "rollback" and report["applied"]
    assert "A/B" in report["reason"]
