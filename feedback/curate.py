"""Feedback events -> clean, mapped training items (SFT / DPO / KTO) and a held-out split.

    from feedback.curate import CurationConfig, curate
    result = curate(store.events(), CurationConfig(trusted_raters={"admin"}))

Input is plain dicts (``{"messages", "ratings", "comparisons"}``, as
``Store.events()`` returns them); only a rater's newest rating of a message
counts. The mapping (DESIGN.md, "Feedback -> training data"):

- correction            -> SFT (prompt -> correction) and DPO (correction > original)
- A/B winner, or a regenerated sibling the same rater liked more -> DPO
- A/B both_bad          -> KTO undesirable for both; tie -> nothing
- thumbs / stars (4-5 good, 1-2 bad, 3 ignored) -> KTO; a trusted rater's thumbs-up also -> SFT
  (only when it came from that account: origin ``user:<rater>``, or unknown on rows older than origins)

Every item carries its backers in ``meta["raters"]`` and where their votes came from in
``meta["origins"]`` (``user:<account>``, ``ip:<address>``; ``rater:<name>`` for rows without a
recorded origin). Then the filters of ``feedback.filters`` run in order (trust, safety,
contradictions, PII, length, duplicates, per-rater cap, per-origin cap). Items tagged
hallucination/unsafe, backed only by low-trust raters, or every item when
``require_review`` is set, wait in ``needs_review`` for a human
(``feedback.review``). The result is a pure function of the events and the
config: ``dataset_hash`` does not depend on event order.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from feedback.filters import (
    KINDS,
    ContradictionFilter,
    Dropped,
    ExactDuplicateFilter,
    Filter,
    Item,
    LengthFilter,
    Message,
    NearDuplicateFilter,
    PIIScrubFilter,
    RaterTrustFilter,
    SafetyFilter,
    TokenCounter,
    approx_token_count,
    assess_raters,
    canonical_json,
    cap_filters,
    drop,
    item_kind,
    make_item,
    minilm_embedder,
    normalize_text,
    sha256_hex,
    split_key,
    split_of,
    trl_row,
)

LOW_TRUST_MODES = ("review", "drop", "keep")
REVIEW_TAGS = frozenset({"hallucination", "unsafe"})


@dataclass
class CurationConfig:
    """How strict curation is. Validated on creation; errors say what to change."""

    heldout_fraction: float = 0.1
    rater_cap: float = 0.2
    max_tokens: int = 1024
    trusted_raters: Collection[str] = frozenset()
    min_trust: float = 0.5
    min_overlap: int = 5
    low_trust: str = "review"  # review: held for a human; drop; keep (treat as trusted)
    require_review: bool = False
    review_tags: Collection[str] = REVIEW_TAGS
    near_duplicate_threshold: float = 0.9
    # Off by default: float embeddings can differ across machines, and the
    # dataset hash must not.
    use_embeddings: bool = False
    extra_filters: Sequence[Filter] = ()

    def __post_init__(self) -> None:
        for name in ("trusted_raters", "review_tags"):
            value = getattr(self, name)
            if isinstance(value, str):
                raise ValueError(
                    f"{name} must be a collection of names, not the string {value!r}; use {{{value!r}}}"
                )
            setattr(self, name, frozenset(value))
        if not 0.0 <= self.heldout_fraction < 1.0:
            raise ValueError(
                f"heldout_fraction must be in [0, 1), got {self.heldout_fraction}; 0.1 keeps 10 % aside"
            )
        if not 0.0 < self.rater_cap <= 1.0:
            raise ValueError(f"rater_cap must be in (0, 1], got {self.rater_cap}; 1.0 disables the cap")
        if not isinstance(self.max_tokens, int) or self.max_tokens < 1:
            raise ValueError(f"max_tokens must be a positive integer, got {self.max_tokens!r}")
        if not 0.0 <= self.min_trust <= 1.0:
            raise ValueError(f"min_trust must be in [0, 1], got {self.min_trust}; 0 disables trust checks")
        if not isinstance(self.min_overlap, int) or self.min_overlap < 1:
            raise ValueError(f"min_overlap must be a positive integer, got {self.min_overlap!r}")
        if self.low_trust not in LOW_TRUST_MODES:
            raise ValueError(f"low_trust must be one of {LOW_TRUST_MODES}, got {self.low_trust!r}")
        if not 0.0 < self.near_duplicate_threshold <= 1.0:
            raise ValueError(
                f"near_duplicate_threshold must be in (0, 1], got {self.near_duplicate_threshold}"
            )
        self.extra_filters = tuple(self.extra_filters)
        for f in self.extra_filters:
            if not isinstance(getattr(f, "name", None), str) or not callable(f):
                raise ValueError(
                    f"extra filter {f!r} needs a str `name` and a call (items) -> (kept, dropped)"
                )

    def summary(self) -> dict[str, Any]:
        """JSON-ready settings for the report and the export manifest."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "extra_filters":
                value = [x.name for x in value]
            elif isinstance(value, frozenset):
                value = sorted(value)
            out[f.name] = value
        return out


@dataclass
class CurationResult:
    """Train items per kind, held-out items, what was dropped and why, what waits for review."""

    sft: list[Item]
    dpo: list[Item]
    kto: list[Item]
    heldout: dict[str, list[Item]]
    dropped: list[Dropped]
    needs_review: list[Item]
    report: dict[str, Any]
    dataset_hash: str
    filters: list[str] = field(default_factory=list)
    config: CurationConfig = field(default_factory=CurationConfig)

    def train(self, kind: str) -> list[Item]:
        return {"sft": self.sft, "dpo": self.dpo, "kto": self.kto}[kind]

    def items(self) -> list[Item]:
        """Every item that trains or evaluates (train + held-out)."""
        return [it for k in KINDS for it in (*self.train(k), *self.heldout[k])]


def default_filters(
    config: CurationConfig, low_trust: set[str], token_count: TokenCounter | None = None
) -> list[Filter]:
    """The standard pipeline, in order; ``config.extra_filters`` run after it."""
    return [
        # Trust first, so contradictions can discount low-trust votes.
        RaterTrustFilter(low_trust=low_trust, mode=config.low_trust),
        # Safety before contradictions: an unsafe answer's down-votes must
        # survive even when up-votes outnumber them.
        SafetyFilter(),
        ContradictionFilter(),
        PIIScrubFilter(),
        LengthFilter(max_tokens=config.max_tokens, token_count=token_count or approx_token_count),
        ExactDuplicateFilter(),
        NearDuplicateFilter(
            threshold=config.near_duplicate_threshold,
            embed=minilm_embedder() if config.use_embeddings else None,
        ),
        # Last: the caps are about the final make-up of each dataset. Per rater, then per origin (account
        # or client address), so one client posing as many raters still gets one share.
        *cap_filters(config.rater_cap, config.heldout_fraction),
    ]


def curate(
    events: Mapping[str, Sequence[Mapping[str, Any]]],
    config: CurationConfig | None = None,
    token_count: TokenCounter | None = None,
) -> CurationResult:
    """Map feedback events to curated TRL items; see the module docstring."""
    config = config or CurationConfig()
    log = _EventLog(events)
    trust, low_trust = assess_raters(
        log.votes(), min_overlap=config.min_overlap, min_trust=config.min_trust, trusted=config.trusted_raters
    )
    candidates, dropped = _map_events(log, config)
    # Canonical order, so every filter sees the same list whatever the event order.
    items = sorted(candidates, key=lambda it: (it["id"], canonical_json(it["meta"])))
    filters = [*default_filters(config, low_trust, token_count), *config.extra_filters]
    for f in filters:
        items, out = f(items)
        dropped += out
    train: list[Item] = []
    waiting: list[Item] = []
    for item in _unique_ids(items, dropped):
        meta = {**item["meta"], "split": split_of(item, config.heldout_fraction)}
        (waiting if meta.get("review") else train).append({**item, "meta": meta})
    context = {
        "config": config.summary(),
        "events": log.counts,
        "candidates": len(candidates),
        "raters": {
            r: {**s, "low_trust": r in low_trust, "trusted": r in config.trusted_raters}
            for r, s in sorted(trust.items())
        },
    }
    return assemble(
        train,
        waiting,
        dropped,
        filter_names=[f.name for f in filters],
        context=context,
        config=config,
    )


def review_reasons(meta: Mapping[str, Any], config: CurationConfig) -> list[str]:
    """Why a human must see an item first (tags, require_review); the trust filter adds its own."""
    reasons = set(meta.get("review", []))
    tags = set(meta.get("positive_tags", [])) | set(meta.get("negative_tags", []))
    reasons |= {f"tagged {tag}" for tag in tags & set(config.review_tags)}
    if config.require_review:
        reasons.add("review required for every item")
    return sorted(reasons)


def assemble(
    items: Sequence[Item],
    needs_review: Sequence[Item],
    dropped: Sequence[Dropped],
    *,
    filter_names: Sequence[str],
    context: Mapping[str, Any] | None = None,
    config: CurationConfig | None = None,
) -> CurationResult:
    """Sort items into kinds and sides (``meta["split"]``), then count and hash them."""
    train: dict[str, list[Item]] = {k: [] for k in KINDS}
    heldout: dict[str, list[Item]] = {k: [] for k in KINDS}
    for item in items:
        (heldout if item["meta"].get("split") == "heldout" else train)[item_kind(item)].append(item)
    for lists in (train, heldout):
        for kind in KINDS:
            lists[kind].sort(key=lambda it: str(it["id"]))
    waiting = sorted(needs_review, key=lambda it: str(it["id"]))
    dropped_sorted = sorted(dropped, key=lambda d: (d["filter"], str(d["item"]["id"]), d["reason"]))
    report = _report(train, heldout, waiting, dropped_sorted, filter_names, context or {})
    return CurationResult(
        sft=train["sft"],
        dpo=train["dpo"],
        kto=train["kto"],
        heldout=heldout,
        dropped=dropped_sorted,
        needs_review=waiting,
        report=report,
        dataset_hash=dataset_hash(train, heldout),
        filters=list(filter_names),
        config=config or CurationConfig(),
    )


def dataset_hash(train: Mapping[str, Sequence[Item]], heldout: Mapping[str, Sequence[Item]]) -> str:
    """sha256 of what the trainers and the gate will see (ids + TRL columns, no provenance)."""
    payload = {
        side: {k: sorted((trl_row(it) for it in lists.get(k, [])), key=lambda r: str(r["id"])) for k in KINDS}
        for side, lists in (("train", train), ("heldout", heldout))
    }
    return sha256_hex(canonical_json(payload))


# -- events ------------------------------------------------------------------


def verdict(rating: Mapping[str, Any]) -> bool | None:
    """Good (True), bad (False) or no opinion; thumbs win over stars when both are given."""
    if rating.get("rating") == "up":
        return True
    if rating.get("rating") == "down":
        return False
    stars = rating.get("stars")
    if stars is None:
        return None
    if stars >= 4:
        return True
    if stars <= 2:
        return False
    return None


class _EventLog:
    """The events as curation needs them: current ratings only, newest comparison per rater and pair."""

    def __init__(self, events: Mapping[str, Sequence[Mapping[str, Any]]]) -> None:
        # Nothing here may depend on the order events come in (the dataset hash must not): every "which one
        # wins" below is decided by the events' own fields, down to the whole row when all else ties.
        self.messages: dict[str, dict[str, Any]] = {}
        for m in events.get("messages", []):
            if m.get("id") is None:
                continue
            mid = str(m["id"])
            # Ids are unique in the store; should a log repeat one, the same copy wins whatever the order.
            if mid not in self.messages or _fingerprint(m) > _fingerprint(self.messages[mid]):
                self.messages[mid] = dict(m)
        all_ratings = [dict(r) for r in events.get("ratings", [])]
        newest: dict[tuple[str, str], dict[str, Any]] = {}
        for r in all_ratings:
            if r.get("current") is False:
                continue  # Store.events() already marked it history
            key = (str(r["message_id"]), str(r["rater"]))
            newest[key] = _newer(newest.get(key), r)
        self.all_ratings = all_ratings
        self.orphans = sum(1 for key in newest if key[0] not in self.messages)
        self.ratings = {key: r for key, r in sorted(newest.items()) if key[0] in self.messages}
        self.raters_of: dict[str, list[str]] = defaultdict(list)
        for mid, rater in self.ratings:
            self.raters_of[mid].append(rater)
        pairs: dict[tuple[tuple[str, str], str], dict[str, Any]] = {}
        for c in (dict(c) for c in events.get("comparisons", [])):
            a, b = str(c["message_a"]), str(c["message_b"])
            if a in self.messages and b in self.messages and a != b:
                pair_key = (_pair(a, b), str(c["rater"]))
                pairs[pair_key] = _newer(pairs.get(pair_key), c)
        self.comparisons = dict(sorted(pairs.items()))
        self.tags: dict[str, set[str]] = defaultdict(set)
        for (mid, _), r in self.ratings.items():
            self.tags[mid] |= set(r.get("tags") or [])
        # The rating that made each correction. In the store a correction has exactly one; in a hostile log
        # several may claim it: a rater's current verdict beats history, then the newest wins.
        self.correction_rating: dict[str, dict[str, Any]] = {}
        for r in all_ratings:
            if not r.get("correction_id"):
                continue
            cid = str(r["correction_id"])
            old = self.correction_rating.get(cid)
            if old is None or self._is_current(r) > self._is_current(old):
                self.correction_rating[cid] = r
            elif self._is_current(r) == self._is_current(old):
                self.correction_rating[cid] = _newer(old, r)
        self.counts = {
            "messages": len(self.messages),
            "ratings": len(all_ratings),
            "current_ratings": len(self.ratings),
            "orphan_ratings": self.orphans,
            "comparisons": len(events.get("comparisons", [])),
        }

    def _is_current(self, rating: Mapping[str, Any]) -> bool:
        return self.ratings.get((str(rating["message_id"]), str(rating["rater"]))) is rating

    def votes(self) -> dict[str, dict[str, bool]]:
        out: dict[str, dict[str, bool]] = defaultdict(dict)
        for (mid, rater), r in self.ratings.items():
            v = verdict(r)
            if v is not None:
                out[mid][rater] = v
        return out


def origin_of(event: Mapping[str, Any]) -> str:
    """Where a rating or comparison came from; a row without one is its own rater's origin."""
    origin = event.get("origin")
    if origin:
        return str(origin)
    rater = event.get("rater")
    return f"rater:{rater}" if rater else ""


def speaks_for(event: Mapping[str, Any], rater: str) -> bool:
    """Whether the event came from ``rater``'s own account (or from before origins were recorded)."""
    origin = event.get("origin")
    return not origin or origin == f"user:{rater}"


def _event_order(event: Mapping[str, Any]) -> tuple[str, str]:
    # Newest = latest created_at; the store's ids grow in commit order and break ties.
    ident = event.get("id")
    return (str(event.get("created_at") or ""), f"{ident:020d}" if isinstance(ident, int) else str(ident))


def _fingerprint(event: Mapping[str, Any]) -> str:
    """The whole row as text: the last tie-break, for logs that repeat an id."""
    try:
        return json.dumps(event, sort_keys=True, default=repr, ensure_ascii=False)
    except (TypeError, ValueError):  # keys of mixed types, circular values: not from the store
        return repr(sorted((repr(k), repr(v)) for k, v in event.items()))


def _newer(old: dict[str, Any] | None, new: dict[str, Any]) -> dict[str, Any]:
    """The newer of two events (by ``_event_order``, then the whole row): the same answer in any order."""
    if old is None:
        return new
    old_order, new_order = _event_order(old), _event_order(new)
    if new_order != old_order:
        return new if new_order > old_order else old
    return new if _fingerprint(new) > _fingerprint(old) else old


def _pair(a: str, b: str) -> tuple[str, str]:
    return (a, b) if a < b else (b, a)


# -- mapping -----------------------------------------------------------------


def _clean_prompt(prompt: Any) -> list[Message] | None:
    """Role/content turns ending with the user's; None when unusable for training."""
    if not isinstance(prompt, list) or not prompt:
        return None
    turns = []
    for m in prompt:
        if (
            not isinstance(m, Mapping)
            or not isinstance(m.get("role"), str)
            or not isinstance(m.get("content"), str)
        ):
            return None
        turns.append({"role": m["role"], "content": m["content"]})
    return turns if turns[-1]["role"] == "user" else None


def _assistant(text: str) -> list[Message]:
    return [{"role": "assistant", "content": text}]


class _Mapper:
    """Builds candidates with uniform provenance; one instance per curate() call."""

    def __init__(self, log: _EventLog, config: CurationConfig) -> None:
        self.log = log
        self.config = config
        self.candidates: list[Item] = []
        self.dropped: list[Dropped] = []

    def prompt(self, message_id: str) -> list[Message] | None:
        return _clean_prompt(self.log.messages[message_id].get("prompt"))

    def add(
        self,
        kind: str,
        content: dict[str, Any],
        *,
        signal: str,
        source_ids: Sequence[str],
        raters: Sequence[str],
        origins: Sequence[str],
        positive: Sequence[str],
        negative: Sequence[str],
        vote_key: str | None = None,
        vote: str | None = None,
        follows_vote: bool = False,
    ) -> None:
        messages = self.log.messages
        meta: dict[str, Any] = {
            "signals": [signal],
            "source_ids": sorted(set(source_ids)),
            "raters": sorted({r for r in raters if r}),
            "origins": sorted({o for o in origins if o}),
            "sources": sorted(
                {str(messages[m].get("source")) for m in (*positive, *negative) if m in messages}
            ),
            "positive_ids": sorted(positive),
            "negative_ids": sorted(negative),
            "positive_tags": sorted({t for m in positive for t in self.log.tags.get(m, ())}),
            "negative_tags": sorted({t for m in negative for t in self.log.tags.get(m, ())}),
            "low_trust": False,
        }
        # Known before any filter runs, so the rater cap can treat held items apart.
        meta["review"] = review_reasons(meta, self.config)
        if vote_key is not None:
            meta.update(vote_key=vote_key, vote=vote, follows_vote=follows_vote)
        self.candidates.append(make_item(kind, content, meta))

    def skip(self, kind: str, source_ids: Sequence[str], reason: str) -> None:
        # A stub item so the report can show what the mapping could not use.
        stub = {
            "id": sha256_hex(canonical_json(sorted(source_ids)))[:32],
            "meta": {"kind": kind, "source_ids": sorted(source_ids)},
        }
        self.dropped.append(drop(stub, "mapping", reason))


def _map_events(log: _EventLog, config: CurationConfig) -> tuple[list[Item], list[Dropped]]:
    mapper = _Mapper(log, config)
    _map_corrections(mapper)
    _map_pairs(mapper)
    _map_votes(mapper)
    return mapper.candidates, mapper.dropped


def _map_corrections(mapper: _Mapper) -> None:
    """A correction: SFT toward it, and DPO correction > original."""
    log = mapper.log
    for cid, msg in sorted(log.messages.items()):
        if msg.get("source") != "correction" or not msg.get("corrects_id"):
            continue
        oid = str(msg["corrects_id"])
        rating = log.correction_rating.get(cid)
        ids = [f"message:{cid}", f"message:{oid}"] + ([f"rating:{rating['id']}"] if rating else [])
        if (
            rating is not None
            and log.ratings.get((str(rating["message_id"]), str(rating["rater"]))) is not rating
        ):
            # The rater judged the answer again since: that newer rating counts.
            mapper.skip("sft", ids, "correction superseded by the rater's newer rating")
            continue
        if oid not in log.messages:
            mapper.skip("sft", ids, f"corrected message {oid} not in the events")
            continue
        prompt = mapper.prompt(cid) or mapper.prompt(oid)
        if prompt is None:
            mapper.skip("sft", ids, "prompt missing or not ending with a user turn")
            continue
        rater = str(rating["rater"]) if rating else str(msg.get("created_by") or "")
        origin = origin_of(rating) if rating else origin_of({"rater": rater})
        corrected, original = str(msg.get("content") or ""), str(log.messages[oid].get("content") or "")
        common: dict[str, Any] = {
            "source_ids": ids,
            "raters": [rater],
            "origins": [origin],
            "positive": [cid],
            "negative": [oid],
            "signal": "correction",
        }
        mapper.add("sft", {"messages": prompt + _assistant(corrected)}, **common)
        if normalize_text(corrected) == normalize_text(original):
            mapper.skip("dpo", ids, "correction has the same text as the original")
            continue
        pair = {"prompt": prompt, "chosen": _assistant(corrected), "rejected": _assistant(original)}
        mapper.add("dpo", pair, **common)


def _map_pairs(mapper: _Mapper) -> None:
    """A/B winners and preferred regenerated siblings -> DPO votes on the pair."""
    log = mapper.log
    said: set[tuple[tuple[str, str], str]] = set()  # a rater's A/B verdict on a pair beats inference
    # chosen, rejected, rater, origins, signal, source ids
    votes: list[tuple[str, str, str, list[str], str, list[str]]] = []
    for (pair, rater), c in log.comparisons.items():
        said.add((pair, rater))
        a, b = str(c["message_a"]), str(c["message_b"])
        if c.get("winner") in ("a", "b"):
            chosen, rejected = (a, b) if c["winner"] == "a" else (b, a)
            votes.append(
                (
                    chosen,
                    rejected,
                    rater,
                    [origin_of(c)],
                    "comparison",
                    [f"comparison:{c['id']}", f"message:{a}", f"message:{b}"],
                )
            )
    siblings: dict[str, list[str]] = defaultdict(list)
    for mid, msg in sorted(log.messages.items()):
        if msg.get("parent_id") is not None and msg.get("source") != "correction":
            siblings[str(msg["parent_id"])].append(mid)
    for parent in sorted(siblings):
        group = siblings[parent]
        if len(group) < 2:
            continue
        raters = sorted({rater for mid in group for rater in log.raters_of.get(mid, ())})
        for rater in raters:
            for i, x in enumerate(group):
                for y in group[i + 1 :]:
                    rx, ry = log.ratings.get((x, rater)), log.ratings.get((y, rater))
                    if rx is None or ry is None or (_pair(x, y), rater) in said:
                        continue
                    better = _preferred(rx, ry)
                    if better is None:
                        continue
                    chosen, rejected = (x, y) if better else (y, x)
                    ids = [f"message:{x}", f"message:{y}", f"rating:{rx['id']}", f"rating:{ry['id']}"]
                    votes.append((chosen, rejected, rater, [origin_of(rx), origin_of(ry)], "sibling", ids))
    for chosen, rejected, rater, origins, signal, ids in votes:
        prompt = mapper.prompt(chosen)
        other = _clean_prompt(log.messages[rejected].get("prompt"))
        if prompt is None or other is None:
            mapper.skip("dpo", ids, "prompt missing or not ending with a user turn")
            continue
        if split_key(prompt) != split_key(other):
            mapper.skip("dpo", ids, "the two answers reply to different prompts")
            continue
        good, bad = (str(log.messages[m].get("content") or "") for m in (chosen, rejected))
        if normalize_text(good) == normalize_text(bad):
            mapper.skip("dpo", ids, "chosen and rejected have the same text")
            continue
        mapper.add(
            "dpo",
            {"prompt": prompt, "chosen": _assistant(good), "rejected": _assistant(bad)},
            signal=signal,
            source_ids=ids,
            raters=[rater],
            origins=origins,
            positive=[chosen],
            negative=[rejected],
            vote_key="pair:" + "|".join(_pair(chosen, rejected)),
            vote=chosen,
        )


def _preferred(rx: Mapping[str, Any], ry: Mapping[str, Any]) -> bool | None:
    """True if x beat y, False if y beat x, None if the rater did not prefer one."""
    sx, sy = rx.get("stars"), ry.get("stars")
    if sx is not None and sy is not None and rx.get("rating") is None and ry.get("rating") is None:
        return None if sx == sy else sx > sy
    vx, vy = verdict(rx), verdict(ry)
    if vx is None or vy is None or vx == vy:
        return None
    return vx


def _map_votes(mapper: _Mapper) -> None:
    """Thumbs/stars and both_bad -> one KTO vote per rater and answer; trusted thumbs-up -> SFT."""
    log = mapper.log
    trusted = mapper.config.trusted_raters
    voted: set[tuple[str, str]] = set()
    for (mid, rater), r in log.ratings.items():
        good = verdict(r)
        if good is None:
            continue
        voted.add((mid, rater))
        ids = [f"message:{mid}", f"rating:{r['id']}"]
        prompt = mapper.prompt(mid)
        if prompt is None:
            mapper.skip("kto", ids, "prompt missing or not ending with a user turn")
            continue
        answer = _assistant(str(log.messages[mid].get("content") or ""))
        common: dict[str, Any] = {
            "source_ids": ids,
            "raters": [rater],
            "origins": [origin_of(r)],
            "positive": [mid] if good else [],
            "negative": [] if good else [mid],
            "vote_key": f"message:{mid}",
            "vote": "good" if good else "bad",
        }
        mapper.add("kto", {"prompt": prompt, "completion": answer, "label": good}, signal="rating", **common)
        # A trusted name alone is not enough: anyone can send `user: "admin"` without a key.
        if good and rater in trusted and speaks_for(r, rater):
            mapper.add("sft", {"messages": prompt + answer}, signal="trusted_up", follows_vote=True, **common)
    for (pair, rater), c in log.comparisons.items():
        if c.get("winner") != "both_bad":
            continue
        for mid in pair:
            if (mid, rater) in voted:
                continue  # the rater's own rating of this answer speaks for them
            ids = [f"message:{mid}", f"comparison:{c['id']}"]
            prompt = mapper.prompt(mid)
            if prompt is None:
                mapper.skip("kto", ids, "prompt missing or not ending with a user turn")
                continue
            answer = _assistant(str(log.messages[mid].get("content") or ""))
            mapper.add(
                "kto",
                {"prompt": prompt, "completion": answer, "label": False},
                signal="both_bad",
                source_ids=ids,
                raters=[rater],
                origins=[origin_of(c)],
                positive=[],
                negative=[mid],
                vote_key=f"message:{mid}",
                vote="bad",
            )


# -- checks ------------------------------------------------------------------


def _unique_ids(items: Sequence[Item], dropped: list[Dropped]) -> list[Item]:
    """Guard for custom pipelines without the duplicate filters: ids must be unique."""
    seen: dict[str, Item] = {}
    for item in items:
        if item["id"] in seen:
            dropped.append(drop(item, "exact_duplicate", f"same content as {item['id']}"))
        else:
            seen[item["id"]] = item
    return list(seen.values())


def _report(
    train: Mapping[str, list[Item]],
    heldout: Mapping[str, list[Item]],
    waiting: list[Item],
    dropped: list[Dropped],
    filter_names: Sequence[str],
    context: Mapping[str, Any],
) -> dict[str, Any]:
    final = [it for k in KINDS for it in (*train[k], *heldout[k])]
    by_rater: dict[str, Counter[str]] = defaultdict(Counter)
    by_origin: dict[str, Counter[str]] = defaultdict(Counter)
    by_signal: Counter[str] = Counter()
    by_source: Counter[str] = Counter()
    kto_labels: Counter[str] = Counter()
    pii: Counter[str] = Counter()
    for it in [*final, *waiting]:
        pii.update(it["meta"].get("pii", {}))
    for it in final:
        kind = item_kind(it)
        for r in it["meta"].get("raters", []):
            by_rater[r][kind] += 1
        for o in it["meta"].get("origins", []):
            by_origin[o][kind] += 1
        by_signal.update(it["meta"].get("signals", []))
        by_source.update(it["meta"].get("sources", []))
        if kind == "kto":
            kto_labels["desirable" if it["label"] else "undesirable"] += 1
    dropped_counts = Counter(d["filter"] for d in dropped)
    return {
        **context,
        "train": {k: len(train[k]) for k in KINDS},
        "heldout": {k: len(heldout[k]) for k in KINDS},
        "needs_review": dict(Counter(item_kind(it) for it in waiting)),
        "review_reasons": dict(
            sorted(Counter(r for it in waiting for r in it["meta"].get("review", [])).items())
        ),
        "kto_labels": dict(kto_labels),
        "pii_scrubbed": dict(sorted(pii.items())),
        "by_signal": dict(sorted(by_signal.items())),
        "by_source": dict(sorted(by_source.items())),
        "by_rater": {r: dict(sorted(c.items())) for r, c in sorted(by_rater.items())},
        "by_origin": {o: dict(sorted(c.items())) for o, c in sorted(by_origin.items())},
        "dropped": {
            name: dropped_counts.get(name, 0) for name in ["mapping", *filter_names, *sorted(dropped_counts)]
        },
    }
