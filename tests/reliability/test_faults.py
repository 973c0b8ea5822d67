"""Faults: what the server does when the world around it breaks.

- `kill -9` of a training job: the server keeps answering /health and chats throughout, the job shows as
  failed once reaped, and resuming it finishes the version. (The job side alone: tests/test_jobs.py;
  `kill -9` of the server itself during a rating flood: tests/test_crash.py.)
- The database locked by another process for 3 s while ratings arrive: they wait and succeed, no 5xx,
  and the server stays responsive meanwhile.
- An unusable data dir at start (a path under a regular file, /proc, a file-size limit, a full tmpfs):
  the server exits at once with a clear message and leaves no partial files; an existing database is
  left untouched.
"""

from __future__ import annotations

import hashlib
import os
import resource
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.reliability.conftest import start_server_in, stop_and_clean
from tests.server import REPO, Server, server_env

REPO_TESTS = REPO / "tests"


def test_the_server_crash_test_exists() -> None:
    """kill -9 of the server during a rating flood is tests/test_crash.py's; this suite doesn't repeat it."""
    text = (REPO_TESTS / "test_crash.py").read_text()
    assert "kill=True" in text and "integrity_check" in text


def wait_for(what: str, check: Callable[[], Any], timeout: float = 120.0, pace: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(pace)  # polling pace, bounded by the deadline


class Prober:
    """Background traffic: /health and a short chat, over and over; records every failure and the slowest
    /health answer."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.stop = threading.Event()
        self.failures: list[str] = []
        self.health_ok = 0
        self.chats_ok = 0
        self.slowest_health = 0.0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Prober:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(120)

    def _run(self) -> None:
        with httpx.Client(base_url=self.base_url, timeout=60) as http:
            n = 0
            while not self.stop.is_set():
                n += 1
                try:
                    started = time.monotonic()
                    health = http.get("/health")
                    self.slowest_health = max(self.slowest_health, time.monotonic() - started)
                    if health.status_code == 200 and health.json()["status"] == "ready":
                        self.health_ok += 1
                    else:
                        self.failures.append(f"/health {health.status_code}: {health.text[:200]}")
                    chat = http.post(
                        "/v1/chat/completions",
                        json={
                            "messages": [{"role": "user", "content": f"ping {n}"}],
                            "max_tokens": 2,
                            "user": "prober",
                        },
                    )
                    if chat.status_code == 200:
                        self.chats_ok += 1
                    else:
                        self.failures.append(f"chat {chat.status_code}: {chat.text[:200]}")
                except httpx.HTTPError as exc:
                    self.failures.append(repr(exc))
                self.stop.wait(0.25)


# ------------------------------------------------------------------------------------------- job kill
@pytest.mark.slow
def test_server_keeps_serving_while_its_training_job_is_killed(tiny_model_dir: Path, tmp_path: Path) -> None:
    from tests.test_jobs import TOPICS, seed_feedback
    from tests.test_training import tiny_config
    from training.config import SFTSettings

    # The default layout: a relative ./data under the server's working directory.
    seed_feedback(tmp_path / "data" / "assistant.db", TOPICS)
    server = start_server_in(
        tmp_path,
        model_path=tiny_model_dir,
        env={"ASSISTANT_THREADS": "1", "ASSISTANT_CHAT_RATE_PER_MINUTE": "100000"},
    )
    try:
        admin = httpx.Client(base_url=server.base_url, headers=server.admin_headers(), timeout=60)
        config = tiny_config(
            preference="none",
            step_pause_s=0.4,
            sft=SFTSettings(max_steps=6, batch_size=4, learning_rate=1e-2, max_length=96, save_steps=2),
        ).to_dict()
        with Prober(server.base_url) as prober:
            started = admin.post("/admin/train", json={"config": config})
            assert started.status_code == 200, started.text
            job_id = started.json()["job_id"]
            checkpoint = server.data_dir / "jobs" / job_id / "sft" / "checkpoint-2"
            wait_for(
                "the job's first checkpoint",
                lambda: (
                    checkpoint.is_dir()
                    or admin.get(f"/admin/jobs/{job_id}").json()["status"] in ("failed", "succeeded")
                ),
            )
            job = admin.get(f"/admin/jobs/{job_id}").json()
            assert job["status"] == "running", (
                job,
                (server.data_dir / "jobs" / job_id / "log.txt").read_text()[-3000:],
            )

            with server.db() as db:
                pid = db.execute("SELECT pid FROM training_jobs WHERE id = ?", [job_id]).fetchone()["pid"]
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode()
            assert "training.jobs" in cmdline and job_id in cmdline
            os.kill(pid, signal.SIGKILL)

            failed = wait_for(
                "the reaper",
                lambda: (j := admin.get(f"/admin/jobs/{job_id}").json())["status"] == "failed" and j,
            )
            assert "signal 9" in failed["error"] and "resume" in failed["error"]

            resumed = admin.post(f"/admin/jobs/{job_id}/resume")
            assert resumed.status_code == 200, resumed.text
            done = wait_for(
                "the resumed job",
                lambda: (
                    (j := admin.get(f"/admin/jobs/{job_id}").json())["status"] in ("succeeded", "failed")
                    and j
                ),
                timeout=240,
            )
            assert done["status"] == "succeeded", (
                done,
                (server.data_dir / "jobs" / job_id / "log.txt").read_text()[-3000:],
            )
            assert done["version"]
        assert not prober.failures, prober.failures[:10]
        assert prober.health_ok >= 5 and prober.chats_ok >= 5
        versions = admin.get("/admin/versions").json()
        assert done["version"] in {v["id"] for v in versions["data"]} or versions["data"] == []
        admin.close()
    finally:
        stop_and_clean(server)


# ------------------------------------------------------------------------------------------- DB lock
class ForeignLock:
    """Another process's writer, as far as SQLite can tell: its own connection holding `BEGIN EXCLUSIVE`
    for `hold_s` seconds, then letting go on its own (whatever the server does meanwhile)."""

    def __init__(self, db_path: Path, hold_s: float) -> None:
        self.db_path, self.hold_s = db_path, hold_s
        self.locked = threading.Event()
        self.thread = threading.Thread(target=self._hold, daemon=True)

    def _hold(self) -> None:
        conn = sqlite3.connect(self.db_path, isolation_level=None, timeout=10)
        conn.execute("BEGIN EXCLUSIVE")
        self.locked.set()
        time.sleep(self.hold_s)  # the lock's duration is the point of the test
        conn.execute("COMMIT")
        conn.close()

    def __enter__(self) -> ForeignLock:
        self.thread.start()
        assert self.locked.wait(10)
        self.started = time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        self.thread.join(30)


def health_latencies(base_url: str, seconds: float) -> list[float]:
    out = []
    with httpx.Client(base_url=base_url, timeout=60) as http:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            t0 = time.monotonic()
            assert http.get("/health").status_code == 200
            out.append(time.monotonic() - t0)
            time.sleep(0.1)
    return out


LOCK_S = 3.0


@pytest.mark.slow
def test_ratings_wait_out_a_database_lock_held_by_another_process(tiny_server: Server) -> None:
    with httpx.Client(base_url=tiny_server.base_url, timeout=60) as http:
        reply = http.post(
            "/v1/chat/completions",
            json={
                "messages": [{"role": "user", "content": "Rate me under a lock."}],
                "max_tokens": 3,
                "user": "locker",
            },
        )
        assert reply.status_code == 200
        message_id = reply.json()["id"]

    results: list[tuple[int, Any, float]] = []
    lock = threading.Lock()

    def rate(i: int) -> None:
        with httpx.Client(base_url=tiny_server.base_url, timeout=60) as http:
            started = time.monotonic()
            response = http.post(
                "/v1/feedback",
                json={
                    "message_id": message_id,
                    "rating": "up",
                    "comment": f"locked-{i}",
                    "user": f"locked-{i % 4}",
                },
            )
            with lock:
                results.append((response.status_code, response.json(), time.monotonic() - started))

    raters = [threading.Thread(target=rate, args=(i,)) for i in range(16)]
    with ForeignLock(tiny_server.db_path, LOCK_S):
        for t in raters:
            t.start()
        # Meanwhile the server answers what needs no write.
        health_s = health_latencies(tiny_server.base_url, LOCK_S - 0.5)
    for t in raters:
        t.join(60)
    assert [code for code, _, _ in results] == [200] * 16, results
    assert max(s for _, _, s in results) >= LOCK_S * 0.5, "the ratings did wait for the lock"
    assert max(health_s) < 1.5, f"/health stalled {max(health_s):.1f} s while the database was locked"
    ids = {body["id"] for _, body, _ in results}
    with tiny_server.db() as db:
        rows = db.execute("SELECT id, comment FROM ratings WHERE comment LIKE 'locked-%'").fetchall()
    assert {r["id"] for r in rows} >= ids and len(ids) == 16


@pytest.mark.slow
def test_a_chat_waits_out_a_database_lock_without_stalling_the_server(tiny_server: Server) -> None:
    """A chat writes its user turn before it answers: under a lock it waits, and nothing else does."""
    outcome: dict[str, Any] = {}

    def chat() -> None:
        with httpx.Client(base_url=tiny_server.base_url, timeout=60) as http:
            outcome["chat"] = http.post(
                "/v1/chat/completions",
                json={
                    "messages": [{"role": "user", "content": "Under a lock."}],
                    "max_tokens": 2,
                    "user": "locker",
                },
            )

    chatter = threading.Thread(target=chat)
    with ForeignLock(tiny_server.db_path, LOCK_S):
        chatter.start()
        time.sleep(0.3)  # the chat reaches the store first
        health_s = health_latencies(tiny_server.base_url, LOCK_S - 0.8)
    chatter.join(60)
    assert outcome["chat"].status_code == 200, outcome["chat"].text
    assert max(health_s) < 1.5, f"/health stalled {max(health_s):.1f} s behind a chat waiting on the lock"


# ------------------------------------------------------------------------------------------- data dir
def start_expecting_failure(
    data_dir: Path | str, *, fsize: int | None = None, timeout: float = 120
) -> tuple[int, str]:
    """Start the server on `data_dir`; it must exit by itself. Returns (exit code, its output)."""
    env = server_env("t" * 32, "pw-reliability", {"ASSISTANT_DATA_DIR": str(data_dir)})

    def limit() -> None:  # the child only: "the disk is full" for files past `fsize` bytes
        if fsize is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    done = subprocess.run(
        [sys.executable, "-m", "assistant", "serve", "--port", "1"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=limit,
    )
    return done.returncode, done.stdout + done.stderr


def assert_clear_failure(code: int, output: str, data_dir: Path | str) -> None:
    assert code != 0
    assert "Traceback" not in output, output[-3000:]
    assert output.strip().startswith("error:") or "\nerror:" in output, output[-3000:]
    assert str(data_dir) in output and "ASSISTANT_DATA_DIR" in output, output[-3000:]


def tree(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*")) if path.exists() else []


def test_data_dir_under_a_regular_file(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a directory")
    data_dir = tmp_path / "a-file" / "data"
    code, output = start_expecting_failure(data_dir)
    assert_clear_failure(code, output, data_dir)
    assert "Not a directory" in output
    assert tree(tmp_path) == ["a-file"]


def test_data_dir_in_proc(tmp_path: Path) -> None:
    data_dir = Path("/proc/assistant-reliability-test/data")
    code, output = start_expecting_failure(data_dir)
    assert_clear_failure(code, output, data_dir)
    assert not data_dir.parent.exists()


@pytest.mark.parametrize("fsize", [1024, 40_000], ids=["probe-fails", "database-fails"])
def test_full_disk_at_start_leaves_nothing_behind(tmp_path: Path, fsize: int) -> None:
    """A file-size limit stands in for a full disk: at 1 KB the write probe fails, at 40 KB the database
    is half made when SQLite runs out of room. Either way: a message, and no file or directory left."""
    data_dir = tmp_path / "new" / "data"
    code, output = start_expecting_failure(data_dir, fsize=fsize)
    assert_clear_failure(code, output, data_dir)
    assert ("is not writable" if fsize < 4096 else "could not set up the database") in output, output
    assert tree(tmp_path) == [], tree(tmp_path)


def test_full_disk_leaves_an_existing_database_untouched(tmp_path: Path) -> None:
    from feedback.store import Store

    data_dir = tmp_path / "data"
    with Store(data_dir / "assistant.db") as store:
        store.create_conversation(owner="someone")
    before = {p: hashlib.sha256((data_dir / p).read_bytes()).hexdigest() for p in tree(data_dir)}
    code, output = start_expecting_failure(data_dir, fsize=1024)
    assert_clear_failure(code, output, data_dir)
    after = {p: hashlib.sha256((data_dir / p).read_bytes()).hexdigest() for p in tree(data_dir)}
    assert after == before


@pytest.fixture
def tiny_tmpfs(tmp_path: Path) -> Any:
    """A 64 KB tmpfs, nearly filled: room for the 4 KB write probe, not for a database."""
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.decode().strip()}); the fsize tests cover it")
    try:
        filler = mount / "filler"
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
        try:
            while True:
                os.write(fd, b"\0" * 4096)
        except OSError:
            pass  # full
        finally:
            os.close(fd)
        os.truncate(filler, max(0, filler.stat().st_size - 3 * 4096))  # leave 3 pages free
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], capture_output=True)


def test_full_tmpfs_at_start_leaves_nothing_behind(tiny_tmpfs: Path) -> None:
    data_dir = tiny_tmpfs / "data"
    code, output = start_expecting_failure(data_dir)
    assert_clear_failure(code, output, data_dir)
    assert "could not set up the database" in output or "No space left" in output, output
    assert tree(tiny_tmpfs) == ["filler"], tree(tiny_tmpfs)
