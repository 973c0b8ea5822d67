"""Load: rating clients and chatters at once against a server; no 5xx, no lost rating, chat latency.

    .venv/bin/python bench/load.py                     # 32 raters + 8 chatters, 60 s, own tiny-model server
    .venv/bin/python bench/load.py --raters 8 --chatters 2 --seconds 10
    .venv/bin/python bench/load.py --url http://127.0.0.1:7860 --db data/assistant.db   # a running server

Raters post 👍/👎 + stars + a unique comment to /v1/feedback as fast as they get answers, each as its own
user; chatters stream /v1/chat/completions (16 tokens) and measure the time to the first token (TTFT).
Every rating acknowledged with a 200 must then be in the database ("lost" otherwise). Without --url it
starts `python -m assistant serve` with the tiny random model (tests/helpers.py) and rate limits raised.
Prints a table; exits 1 on any 5xx or lost rating. `tests/reliability/test_load.py` runs it short.
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx

LOAD_ENV = {
    "ASSISTANT_FEEDBACK_RATE_PER_MINUTE": "100000000",
    "ASSISTANT_CHAT_RATE_PER_MINUTE": "100000000",
    "ASSISTANT_THREADS": "1",
}


@dataclass
class LoadResult:
    seconds: float
    raters: int
    chatters: int
    rating_codes: Counter[int] = field(default_factory=Counter)
    chat_codes: Counter[int] = field(default_factory=Counter)
    rating_latency: list[float] = field(default_factory=list)
    ttft: list[float] = field(default_factory=list)
    chat_total: list[float] = field(default_factory=list)
    acked: dict[int, str] = field(default_factory=dict)  # rating id -> its unique comment
    transport_errors: list[str] = field(default_factory=list)
    lost: list[int] = field(default_factory=list)
    changed: list[int] = field(default_factory=list)

    @property
    def server_errors(self) -> int:
        return sum(n for c, n in (self.rating_codes + self.chat_codes).items() if c >= 500)

    def as_dict(self) -> dict[str, Any]:
        return {
            "seconds": round(self.seconds, 1),
            "raters": self.raters,
            "chatters": self.chatters,
            "ratings_ok": self.rating_codes[200],
            "ratings_per_s": round(self.rating_codes[200] / self.seconds, 1),
            "rating_p50_ms": ms(pct(self.rating_latency, 50)),
            "rating_p95_ms": ms(pct(self.rating_latency, 95)),
            "rating_p99_ms": ms(pct(self.rating_latency, 99)),
            "chats_ok": self.chat_codes[200],
            "ttft_p50_ms": ms(pct(self.ttft, 50)),
            "ttft_p95_ms": ms(pct(self.ttft, 95)),
            "chat_p95_ms": ms(pct(self.chat_total, 95)),
            "status_codes": {"feedback": dict(self.rating_codes), "chat": dict(self.chat_codes)},
            "server_errors": self.server_errors,
            "transport_errors": len(self.transport_errors),
            "lost_ratings": len(self.lost),
            "changed_ratings": len(self.changed),
        }


def pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))]


def ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


def chat_once(
    http: httpx.Client, text: str, max_tokens: int, user: str
) -> tuple[int, str | None, float | None, float]:
    """One streamed chat: (status, message id, time to first token, total time)."""
    body = {
        "messages": [{"role": "user", "content": text}],
        "max_tokens": max_tokens,
        "stream": True,
        "user": user,
        "temperature": 0.7,
    }
    started = time.monotonic()
    first: float | None = None
    message_id = None
    with http.stream("POST", "/v1/chat/completions", json=body) as response:
        if response.status_code != 200:
            response.read()
            return response.status_code, None, None, time.monotonic() - started
        for line in response.iter_lines():
            if not line.startswith("data: {"):
                continue
            chunk = json.loads(line[6:])
            if "error" in chunk:
                return 599, None, None, time.monotonic() - started  # an in-band error after the headers
            message_id = chunk["id"]
            if first is None and chunk["choices"][0]["delta"].get("content"):
                first = time.monotonic() - started
    total = time.monotonic() - started
    return 200, message_id, first if first is not None else total, total


def run_load(
    base_url: str,
    db_path: Path,
    *,
    raters: int = 32,
    chatters: int = 8,
    seconds: float = 60.0,
    max_tokens: int = 16,
    seed: int = 0,
) -> LoadResult:
    """Raters and chatters for `seconds`; then every acknowledged rating is looked up in `db_path`."""
    result = LoadResult(seconds=seconds, raters=raters, chatters=chatters)
    lock = threading.Lock()
    pool: list[str] = []
    run_id = f"{int(time.time())}-{random.Random(seed).randrange(10**6)}"
    with httpx.Client(base_url=base_url, timeout=120) as http:
        for i in range(4):  # answers to rate from the first second on
            status, message_id, _, _ = chat_once(http, f"Warm-up question {i}.", 4, "load-warmup")
            assert status == 200 and message_id, f"warm-up chat failed with {status}"
            pool.append(message_id)
    start = threading.Barrier(raters + chatters + 1)
    deadline = 0.0

    def rater(n: int) -> None:
        rng = random.Random(seed * 1000 + n)
        with httpx.Client(base_url=base_url, timeout=120) as http:
            start.wait()
            i = 0
            while time.monotonic() < deadline:
                i += 1
                comment = f"load-{run_id}-r{n}-{i}"
                with lock:
                    message_id = rng.choice(pool)
                body = {
                    "message_id": message_id,
                    "rating": rng.choice(["up", "down"]),
                    "stars": rng.randint(1, 5),
                    "comment": comment,
                    "user": f"load-rater-{n}",
                }
                t0 = time.monotonic()
                try:
                    response = http.post("/v1/feedback", json=body)
                except httpx.HTTPError as exc:
                    with lock:
                        result.transport_errors.append(repr(exc))
                    continue
                elapsed = time.monotonic() - t0
                with lock:
                    result.rating_codes[response.status_code] += 1
                    result.rating_latency.append(elapsed)
                    if response.status_code == 200:
                        result.acked[response.json()["id"]] = comment

    def chatter(n: int) -> None:
        with httpx.Client(base_url=base_url, timeout=120) as http:
            start.wait()
            i = 0
            while time.monotonic() < deadline:
                i += 1
                try:
                    status, message_id, ttft, total = chat_once(
                        http, f"Question {i} from chatter {n}: why?", max_tokens, f"load-chatter-{n}"
                    )
                except httpx.HTTPError as exc:
                    with lock:
                        result.transport_errors.append(repr(exc))
                    continue
                with lock:
                    result.chat_codes[status] += 1
                    if status == 200:
                        result.ttft.append(ttft or total)
                        result.chat_total.append(total)
                        pool.append(message_id)

    threads = [threading.Thread(target=rater, args=(n,), daemon=True) for n in range(raters)]
    threads += [threading.Thread(target=chatter, args=(n,), daemon=True) for n in range(chatters)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + seconds
    started = time.monotonic()
    start.wait()
    for t in threads:
        t.join(seconds + 180)
    result.seconds = time.monotonic() - started
    check_stored(result, db_path)
    return result


def check_stored(result: LoadResult, db_path: Path) -> None:
    """Every acknowledged rating is in the database, with the comment it was sent with."""
    ids = list(result.acked)
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=30)
    try:
        stored: dict[int, str] = {}
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            marks = ",".join("?" * len(chunk))
            stored.update(
                conn.execute(f"SELECT id, comment FROM ratings WHERE id IN ({marks})", chunk).fetchall()
            )
    finally:
        conn.close()
    result.lost = [i for i in ids if i not in stored]
    result.changed = [i for i in ids if i in stored and stored[i] != result.acked[i]]


def table(result: LoadResult) -> str:
    d = result.as_dict()
    rows = [
        ("duration", f"{d['seconds']} s"),
        ("clients", f"{d['raters']} raters + {d['chatters']} chatters"),
        ("ratings acknowledged", f"{d['ratings_ok']} ({d['ratings_per_s']}/s)"),
        (
            "rating latency p50 / p95 / p99",
            f"{d['rating_p50_ms']} / {d['rating_p95_ms']} / {d['rating_p99_ms']} ms",
        ),
        ("chats completed", str(d["chats_ok"])),
        ("chat TTFT p50 / p95", f"{d['ttft_p50_ms']} / {d['ttft_p95_ms']} ms"),
        ("chat total p95", f"{d['chat_p95_ms']} ms"),
        ("status codes", json.dumps(d["status_codes"])),
        ("5xx", str(d["server_errors"])),
        ("transport errors", str(d["transport_errors"])),
        ("ratings lost", str(d["lost_ratings"])),
        ("ratings changed", str(d["changed_ratings"])),
    ]
    width = max(len(k) for k, _ in rows)
    line = "-" * (width + 3 + max(len(v) for _, v in rows))
    return "\n".join([line, *(f"{k:<{width}} | {v}" for k, v in rows), line])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="a running server (default: start one with the tiny model)")
    parser.add_argument("--db", type=Path, help="its database (with --url)")
    parser.add_argument("--raters", type=int, default=32)
    parser.add_argument("--chatters", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON too")
    args = parser.parse_args(argv)

    server = None
    if args.url:
        if args.db is None:
            parser.error("--url needs --db (the server's assistant.db) to check for lost ratings")
        base_url, db_path = args.url.rstrip("/"), args.db
    else:
        from tests.conftest import SHARED
        from tests.helpers import build_tiny_model
        from tests.server import start_server

        model = build_tiny_model(SHARED / "tiny-llama")
        data_dir = Path(tempfile.mkdtemp(prefix="load-")) / "data"
        print(f"starting a tiny-model server on {data_dir} ...", flush=True)
        server = start_server(data_dir, model_path=model, env=LOAD_ENV)
        base_url, db_path = server.base_url, server.db_path
    try:
        result = run_load(
            base_url,
            db_path,
            raters=args.raters,
            chatters=args.chatters,
            seconds=args.seconds,
            max_tokens=args.max_tokens,
        )
    finally:
        if server is not None:
            import shutil

            from tests.server import stop_server

            stop_server(server)
            shutil.rmtree(server.data_dir.parent, ignore_errors=True)
    print(table(result))
    if args.json:
        print(json.dumps(result.as_dict()))
    return 1 if result.server_errors or result.lost or result.changed or result.transport_errors else 0


if __name__ == "__main__":
    sys.exit(main())
