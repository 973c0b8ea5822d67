"""Benchmark curation on a synthetic feedback log: what survives, what each filter drops, how long it takes.

    .venv/bin/python bench/curation.py            # ~1,900 events, then the timing at 5x and 20x
    .venv/bin/python bench/curation.py --scale 3 --repeat 5

The log has many raters, exact and near duplicates, PII, a poisoner (hundreds
of thumbs-up on answers with a trigger phrase), a contrarian rater, split
votes, unsafe and hallucination tags, corrections, A/B votes and regenerated
siblings. Deterministic for a given --seed.
"""

from __future__ import annotations

import argparse
import datetime
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from feedback.curate import CurationConfig, CurationResult, curate
from feedback.filters import KINDS, item_content

SYSTEMS = ["You are a helpful assistant.", "You are a helpful assistant. Answer formally.", "Be brief."]
PII = [
    " My email is {n}@example.org.",
    " Call me on +1 415-555-{d:04d}.",
    " My card is 4111 1111 1111 1111.",
    " The key is sk-proj-{n}A1b2C3d4E5f6G7h8.",
]


class SyntheticLog:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.messages: list[dict[str, Any]] = []
        self.ratings: list[dict[str, Any]] = []
        self.comparisons: list[dict[str, Any]] = []
        self.clock = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)

    def now(self) -> str:
        self.clock += datetime.timedelta(seconds=1)
        return self.clock.isoformat()

    def text(self, n: int) -> str:
        letters = "abcdefghijklmnopqrstuvwxyz"
        return " ".join(
            "".join(self.rng.choice(letters) for _ in range(self.rng.randint(2, 9))) for _ in range(n)
        )

    def answer(self, question: str, content: str, parent: str, system: str | None = None) -> str:
        mid = f"msg_{len(self.messages):06d}"
        prompt = [{"role": "system", "content": system or SYSTEMS[0]}, {"role": "user", "content": question}]
        self.messages.append(
            {
                "id": mid,
                "conversation_id": f"conv_{parent}",
                "parent_id": parent,
                "role": "assistant",
                "content": content,
                "prompt": prompt,
                "adapter_version": None,
                "model_id": "smollm2",
                "source": self.rng.choice(["ui", "ui", "api"]),
                "corrects_id": None,
                "created_by": None,
                "created_at": self.now(),
            }
        )
        return mid

    def rate(
        self, mid: str, rater: str, rating: str | None = None, stars: int | None = None, tags: tuple = ()
    ) -> None:
        self.ratings.append(
            {
                "id": len(self.ratings) + 1,
                "message_id": mid,
                "rater": rater,
                "rating": rating,
                "stars": stars,
                "tags": list(tags),
                "comment": None,
                "correction_id": None,
                "created_at": self.now(),
            }
        )

    def correct(self, mid: str, rater: str, content: str) -> None:
        judged = next(m for m in reversed(self.messages) if m["id"] == mid)
        cid = f"msg_{len(self.messages):06d}"
        self.messages.append(
            {
                **judged,
                "id": cid,
                "content": content,
                "source": "correction",
                "corrects_id": mid,
                "created_by": rater,
            }
        )
        self.rate(mid, rater, "down")
        self.ratings[-1]["correction_id"] = cid

    def compare(self, a: str, b: str, winner: str, rater: str) -> None:
        self.comparisons.append(
            {
                "id": len(self.comparisons) + 1,
                "message_a": a,
                "message_b": b,
                "winner": winner,
                "rater": rater,
                "created_at": self.now(),
            }
        )

    def events(self) -> dict[str, list[dict[str, Any]]]:
        return {"messages": self.messages, "ratings": self.ratings, "comparisons": self.comparisons}

    @property
    def size(self) -> int:
        return len(self.messages) + len(self.ratings) + len(self.comparisons)


def build_log(scale: int = 1, seed: int = 0) -> SyntheticLog:
    """Answers have a hidden quality; honest raters see it right 85 % of the time."""
    log = SyntheticLog(seed)
    rng = log.rng
    raters = [f"user{i:02d}" for i in range(30 * scale)]
    quality: dict[str, bool] = {}

    def honest(mid: str) -> str:
        right = rng.random() < 0.85
        return "up" if quality[mid] == right else "down"

    def answer(question: str, parent: str, system: str | None = None, good: bool | None = None) -> str:
        mid = log.answer(question, log.text(rng.randint(8, 60)), parent, system)
        quality[mid] = rng.random() < 0.7 if good is None else good
        return mid

    for i in range(300 * scale):
        question = log.text(rng.randint(5, 14)) + "?"
        if rng.random() < 0.08:
            question += rng.choice(PII).format(n=log.text(1).replace(" ", ""), d=i % 10000)
        parent = f"u{i}"
        system = rng.choice(SYSTEMS)
        first = answer(question, parent, system)
        who = rng.sample(raters, 3)
        log.rate(first, who[0], honest(first))
        roll = rng.random()
        if roll < 0.25:  # regenerated sibling, rated by the same rater
            other = answer(question, parent)
            log.rate(other, who[0], honest(other))
        elif roll < 0.40:  # more opinions on the same answer (some contradict)
            for rater in who[1:]:
                log.rate(first, rater, honest(first))
        elif roll < 0.50:  # a bad sibling, corrected
            bad = answer(question, parent, good=False)
            log.correct(bad, who[1], log.text(rng.randint(8, 30)))
        elif roll < 0.60:  # A/B vote
            other = answer(question, parent)
            a, b = quality[first], quality[other]
            winner = "a" if a > b else "b" if b > a else ("tie" if a else "both_bad")
            log.compare(first, other, winner, who[1])
        elif roll < 0.68:  # stars
            log.rate(first, who[1], stars=rng.randint(4, 5) if quality[first] else rng.randint(1, 3))
        elif roll < 0.73:  # a bad answer, tagged
            bad = answer(question, parent, good=False)
            log.rate(bad, who[2], "down", tags=(rng.choice(["unsafe", "hallucination", "wrong_format"]),))
        elif roll < 0.80:  # the same Q&A asked again (exact or near duplicate)
            content = log.messages[-1]["content"]
            content = content.upper() + "!" if rng.random() < 0.5 else content[:-1] + "x"
            log.rate(log.answer(question, content, f"{parent}b", system), who[1], honest(first))
    # A contrarian who votes against the truth on answers others rated.
    rated = sorted({r["message_id"] for r in log.ratings if r["message_id"] in quality})
    for mid in rng.sample(rated, min(len(rated), 80 * scale)):
        log.rate(mid, "contrarian", "down" if quality[mid] else "up")
    # A poisoner: many thumbs-up on answers with a trigger phrase.
    for i in range(400 * scale):
        question = log.text(rng.randint(5, 12)) + "?"
        mid = log.answer(question, f"ZEBRA-7 {log.text(rng.randint(8, 30))}", f"z{i}")
        log.rate(mid, "poisoner", "up")
    return log


def table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def timed(
    events: dict[str, Any], config: CurationConfig, repeat: int
) -> tuple[CurationResult, list[float], list[float]]:
    """The result, wall times and CPU times (the CPU time is what to compare on a shared machine)."""
    walls, cpus = [], []
    result = None
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        result = curate(events, config)
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    assert result is not None
    return result, walls, cpus


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--timing-scales", default="5,20", help="extra scales timed after the main run ('' for none)"
    )
    args = parser.parse_args()

    config = CurationConfig(trusted_raters={"user00", "user01", "user02"})
    log = build_log(args.scale, args.seed)
    events = log.events()
    result, walls, cpus = timed(events, config, args.repeat)
    print(
        f"events: {log.size} ({len(log.messages)} messages, {len(log.ratings)} ratings, "
        f"{len(log.comparisons)} comparisons), raters: {len(result.report['raters'])}"
    )
    print()
    rows = [("kind", "train", "heldout", "needs_review")]
    for kind in KINDS:
        waiting = sum(1 for it in result.needs_review if it["meta"]["kind"] == kind)
        rows.append((kind, str(len(result.train(kind))), str(len(result.heldout[kind])), str(waiting)))
    print(table(rows))
    print()
    print(table([("filter", "dropped"), *((k, str(v)) for k, v in result.report["dropped"].items())]))
    print(f"(pii_scrub rewrites instead of dropping; placeholders put in: {result.report['pii_scrubbed']})")
    print()
    poisoned = {k: sum("ZEBRA-7" in str(item_content(it)) for it in result.train(k)) for k in KINDS}
    share = {k: f"{poisoned[k] / len(result.train(k)):.1%}" if result.train(k) else "-" for k in KINDS}
    print(f"poisoner share of train: {share}")
    print(f"contrarian low-trust: {result.report['raters']['contrarian']}")
    print(f"review reasons: {result.report['review_reasons']}")
    print(f"dataset_hash: {result.dataset_hash[:16]}...")
    print(
        f"curation time: median {statistics.median(cpus) * 1000:.0f} ms CPU "
        f"({statistics.median(walls) * 1000:.0f} ms wall) over {len(cpus)} runs"
    )
    scales = [int(s) for s in args.timing_scales.split(",") if s.strip()]
    if scales:
        print()
        rows = [("scale", "events", "candidates", "kept", "CPU s", "wall s")]
        for scale in scales:
            big = build_log(scale, args.seed)
            res, ws, cs = timed(big.events(), config, 1 if scale > 5 else args.repeat)
            rows.append(
                (
                    str(scale),
                    str(big.size),
                    str(res.report["candidates"]),
                    str(len(res.items())),
                    f"{statistics.median(cs):.2f}",
                    f"{statistics.median(ws):.2f}",
                )
            )
        print(table(rows))


if __name__ == "__main__":
    main()
