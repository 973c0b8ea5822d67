"""Crash safety of the ratings: flood a real server with ratings from several threads, `kill -9` it in the
middle, restart it on the same data dir, and check that SQLite is intact and that every rating the
server acknowledged (HTTP 200) survived.

Each iteration starts the server once: that start is also the restart after the previous kill.
`make test` runs 5 iterations; the 20-iteration variant is marked `full` (`make test-full`).
"""

from __future__ import annotations

import random
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.server import Server, connect_ro, start_server, stop_server

FLOOD_ENV = {"ASSISTANT_FEEDBACK_RATE_PER_MINUTE": "1000000", "ASSISTANT_THREADS": "1"}
THREADS = 6


def check_after_restart(db_path: Path, acked: dict[int, str]) -> int:
    """integrity_check is ok, every acknowledged rating is there once, intact. Returns the row count."""
    with connect_ro(db_path) as db:
        assert [r[0] for r in db.execute("PRAGMA integrity_check")] == ["ok"]
        rows = {r["id"]: r["comment"] for r in db.execute("SELECT id, comment FROM ratings")}
        dupes = db.execute(
            "SELECT count(*) FROM (SELECT comment FROM ratings GROUP BY comment HAVING count(*) > 1)"
        ).fetchone()[0]
    missing = [i for i in acked if i not in rows]
    assert not missing, f"{len(missing)} acknowledged ratings lost, e.g. {missing[:5]}"
    assert all(rows[i] == comment for i, comment in acked.items()), "an acknowledged rating changed"
    assert dupes == 0, "a rating was stored twice"
    return len(rows)


def flood_then_kill(server: Server, message_id: str, iteration: int, rng: random.Random) -> dict[int, str]:
    """Rate from THREADS threads until a random number were acknowledged, then SIGKILL the server."""
    acked: dict[int, str] = {}
    failures: list[Any] = []
    lock = threading.Lock()
    enough = threading.Event()
    threshold = rng.randint(20, 250)

    def rate(worker: int) -> None:
        with httpx.Client(base_url=server.base_url, timeout=30) as http:
            for n in range(100_000):
                comment = f"it{iteration}-w{worker}-n{n}"
                try:
                    response = http.post(
                        "/v1/feedback",
                        json={
                            "message_id": message_id,
                            "rating": "up" if n % 2 else "down",
                            "stars": 1 + n % 5,
                            "comment": comment,
                            "user": f"crash-{worker}",
                        },
                    )
                except httpx.HTTPError:
                    return  # the server is gone: what it acknowledged must have survived
                with lock:
                    if response.status_code == 200:
                        acked[response.json()["id"]] = comment
                        if len(acked) >= threshold:
                            enough.set()
                    elif not enough.is_set():  # before the kill, every rating must succeed
                        failures.append((response.status_code, response.text[:200]))
                        enough.set()
                        return

    workers = [threading.Thread(target=rate, args=(w,), daemon=True) for w in range(THREADS)]
    for w in workers:
        w.start()
    assert enough.wait(120), "the flood never got going"
    stop_server(server, kill=True)  # kill -9 while the other threads are still sending
    for w in workers:
        w.join(60)
    assert not any(w.is_alive() for w in workers)
    assert not failures, failures
    assert server.process.returncode == -9
    return acked


def crash_loop(data_dir: Path, model_dir: Path, iterations: int, seed: int) -> None:
    rng = random.Random(seed)
    acked: dict[int, str] = {}
    message_id = None
    for iteration in range(iterations + 1):
        server = start_server(data_dir, model_path=model_dir, env=FLOOD_ENV)
        try:
            count = check_after_restart(server.db_path, acked)
            assert count >= len(acked)
            if iteration == iterations:
                break
            if message_id is None:
                reply = httpx.post(
                    f"{server.base_url}/v1/chat/completions",
                    timeout=60,
                    json={
                        "messages": [{"role": "user", "content": "Rate me."}],
                        "max_tokens": 3,
                    },
                )
                assert reply.status_code == 200, reply.text
                message_id = reply.json()["id"]
            new = flood_then_kill(server, message_id, iteration, rng)
            assert new, "nothing was acknowledged before the kill"
            acked.update(new)
        finally:
            stop_server(server, kill=True)
    assert len(acked) >= iterations * 20


@pytest.mark.slow
def test_ratings_survive_kill_9(tmp_path: Path, tiny_model_dir: Path) -> None:
    crash_loop(tmp_path / "data", tiny_model_dir, iterations=5, seed=5)


@pytest.mark.slow
@pytest.mark.full
def test_ratings_survive_kill_9_twenty_times(
    tmp_path: Path, tiny_model_dir: Path, request: pytest.FixtureRequest
) -> None:
    if "full" not in (request.config.getoption("-m") or ""):
        pytest.skip("the 20-iteration variant runs with -m full (make test-full)")
    crash_loop(tmp_path / "data", tiny_model_dir, iterations=20, seed=20)
