"""Training jobs: launch, watch, cancel, reap and resume a training subprocess; its progress lives in SQLite.

    from training.jobs import JobManager
    jobs = JobManager(settings, model_dir)     # settings: anything with data_dir and db_path
    job_id = jobs.start(JobConfig())           # returns at once; the job runs in its own process
    jobs.get(job_id)["status"]                 # queued → running → succeeded | failed | cancelled | ...
    jobs.progress(job_id, since_id=0)          # rows: phase, step, loss, reward acc./margin, tokens/s, ETA
    jobs.cancel(job_id); jobs.reap(); jobs.resume(job_id)

    python -m training.jobs run JOB_ID --data-dir DATA --model-dir MODEL   # the subprocess (start() runs it)

The job is a separate process so that a crash, a kill or an out-of-memory cannot touch the server. It writes
its own status, a heartbeat and progress rows through its own SQLite connection (BEGIN IMMEDIATE, busy
timeout); the server only starts, cancels and reaps. A cancel is a `cancel` file in the job's directory that
the job checks after every step; a job killed outright is found by `reap()` (dead pid or stale heartbeat) and
can be `resume()`d from its last checkpoint. One job runs at a time: two would fight over the same cores.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import secrets
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from training import JobAlreadyRunningError, JobNotFoundError, NotEnoughDataError, TrainingCancelled
from training.config import JobConfig
from training.pipeline import THREADS_FILE, discard_outputs, run_pipeline
from training.threads import resolve_threads, thread_env

PROJECT_ROOT = Path(__file__).resolve().parent.parent
ACTIVE = ("queued", "running")
TERMINAL = ("succeeded", "failed", "cancelled", "not_enough_data")
CANCEL_FILE = "cancel"
LOG_FILE = "log.txt"
JOB_NICE = 10  # chats first: the job takes the CPU the server leaves


class SettingsLike(Protocol):
    @property
    def data_dir(self) -> Path: ...

    @property
    def db_path(self) -> Path: ...


def utc_now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="microseconds")


def _age_s(timestamp: str | None) -> float:
    if not timestamp:
        return float("inf")
    then = datetime.datetime.fromisoformat(timestamp)
    return (datetime.datetime.now(datetime.UTC) - then).total_seconds()


def new_job_id() -> str:
    """Sortable by creation time, unique without coordination: job_20260101T120000_1a2b3c."""
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%S")
    return f"job_{stamp}_{secrets.token_hex(3)}"


def connect(db_path: Path) -> sqlite3.Connection:
    """A connection of our own: autocommit mode, so every write is an explicit BEGIN IMMEDIATE."""
    conn = sqlite3.connect(db_path, isolation_level=None, timeout=30.0, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA busy_timeout=30000")  # the server's store and the job write the same file
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")  # a lost progress row on power loss is fine
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def ensure_schema(db_path: Path) -> None:
    import sqlite_utils

    from feedback.migrations import migrate

    db_path.parent.mkdir(parents=True, exist_ok=True)
    conn = connect(db_path)
    try:
        migrate(sqlite_utils.Database(conn))
    finally:
        conn.close()


def decode_job(row: sqlite3.Row) -> dict[str, Any]:
    job = dict(row)
    job["config"] = json.loads(job.pop("config_json") or "{}")
    job["data"] = json.loads(job.pop("data_json") or "{}")
    return job


def _proc_cmdline(pid: int) -> str | None:
    """The command line of a live (non-zombie) process, or None."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            state = fh.read().rsplit(")", 1)[1].split()[0]
        if state in ("Z", "X"):  # exited, waiting to be reaped by its parent
            return None
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode(errors="replace")
    except (OSError, IndexError):
        return None


class JobManager:
    """Starts and supervises training jobs. Create one per server process; it is thread-safe."""

    def __init__(
        self,
        settings: SettingsLike,
        model_dir: Path,
        *,
        stale_after_s: float = 120.0,
        cancel_wait_s: float = 30.0,
        heartbeat_s: float = 5.0,
        nice: int = JOB_NICE,
    ) -> None:
        self.data_dir = Path(settings.data_dir)
        self.db_path = Path(settings.db_path)
        self.jobs_dir = Path(getattr(settings, "jobs_dir", self.data_dir / "jobs"))
        self.adapters_dir = Path(getattr(settings, "adapters_dir", self.data_dir / "adapters"))
        self.model_dir = Path(model_dir)
        self.stale_after_s = stale_after_s  # no heartbeat for this long: the job is hung or gone
        self.cancel_wait_s = cancel_wait_s  # a cancelled job that has not stopped by then is killed
        self.heartbeat_s = heartbeat_s
        self.nice = nice  # the job's niceness increment: chats first, training takes the leftover CPU
        self._children: dict[str, subprocess.Popen[bytes]] = {}
        self._lock = threading.Lock()
        ensure_schema(self.db_path)

    # -- reads ---------------------------------------------------------------

    @contextlib.contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        conn = connect(self.db_path)
        try:
            yield conn
        finally:
            conn.close()

    def get(self, job_id: str) -> dict[str, Any]:
        with self._db() as conn:
            row = conn.execute("SELECT * FROM training_jobs WHERE id = ?", [job_id]).fetchone()
        if row is None:
            raise JobNotFoundError(f"no training job {job_id!r}")
        job = decode_job(row)
        job["log_path"] = str(self.jobs_dir / job_id / LOG_FILE)
        return job

    def progress(self, job_id: str, since_id: int = 0, limit: int = 1000) -> list[dict[str, Any]]:
        """Progress rows after `since_id`, oldest first: poll with the last id you saw."""
        with self._db() as conn:
            rows = conn.execute(
                "SELECT * FROM job_progress WHERE job_id = ? AND id > ? ORDER BY id LIMIT ?",
                [job_id, since_id, max(1, min(limit, 10_000))],
            ).fetchall()
        return [dict(row) for row in rows]

    def list_jobs(self, limit: int = 20) -> list[dict[str, Any]]:
        with self._db() as conn:
            rows = conn.execute(
                "SELECT * FROM training_jobs ORDER BY created_at DESC, id DESC LIMIT ?",
                [max(1, min(limit, 500))],
            ).fetchall()
        return [decode_job(row) for row in rows]

    def active_job(self) -> dict[str, Any] | None:
        with self._db() as conn:
            row = conn.execute(
                "SELECT * FROM training_jobs WHERE status IN ('queued', 'running') LIMIT 1"
            ).fetchone()
        return decode_job(row) if row else None

    # -- lifecycle -----------------------------------------------------------

    def start(
        self,
        config: JobConfig | None = None,
        datasets_dir: Path | None = None,
        *,
        parent: str | None = None,
        curation: dict[str, Any] | None = None,
        gate: bool = False,
    ) -> str:
        """Queue a job and launch its process; returns its id. JobAlreadyRunningError if one is active.

        datasets_dir: a curated export to train on; None = the job curates and exports the feedback in the
        database itself, with `curation` as CurationConfig keyword arguments.
        parent: the version this one is meant to replace: recorded in its manifest (and trained on with
        JobConfig.init_from_parent).
        """
        config = config or JobConfig()
        self.reap()  # a dead job must not block new ones forever
        job_id = new_job_id()
        data = {
            "datasets_dir": str(datasets_dir) if datasets_dir else None,
            "parent": parent,
            "curation": curation,
            "gate": gate,  # run the promotion gate as the job's last phase (training/gate_step.py)
        }
        with self._db() as conn, transaction(conn):
            self._refuse_if_active(conn)
            conn.execute(
                "INSERT INTO training_jobs (id, status, created_at, config_json, data_json) "
                "VALUES (?, 'queued', ?, ?, ?)",
                [job_id, utc_now(), json.dumps(config.to_dict()), json.dumps(data)],
            )
        self._launch(job_id, config)
        return job_id

    def resume(self, job_id: str) -> None:
        """Relaunch a failed job; it continues from the last checkpoint in its directory."""
        self.reap()
        job = self.get(job_id)
        if job["status"] != "failed":
            hint = (
                "a cancelled job keeps no checkpoints: start a new one"
                if job["status"] == "cancelled"
                else "only failed jobs can be resumed"
            )
            raise ValueError(f"job {job_id} is {job['status']}; {hint}")
        with self._db() as conn, transaction(conn):
            self._refuse_if_active(conn)
            conn.execute(
                "UPDATE training_jobs SET status = 'queued', error = NULL, finished_at = NULL, pid = NULL, "
                "heartbeat_at = NULL WHERE id = ?",
                [job_id],
            )
        (self.jobs_dir / job_id / CANCEL_FILE).unlink(missing_ok=True)
        self._launch(job_id, JobConfig.from_dict(job["config"]))

    def cancel(self, job_id: str, wait_s: float | None = None) -> dict[str, Any]:
        """Ask a job to stop and wait up to `wait_s` (default cancel_wait_s) for it; then kill it.

        The job stops after its current step, discards its partial output and reports `cancelled`. With
        wait_s=0 this only files the request; reap() kills the job if it ignores it for cancel_wait_s.
        """
        job = self.get(job_id)
        if job["status"] in TERMINAL:
            return job
        job_dir = self.jobs_dir / job_id
        job_dir.mkdir(parents=True, exist_ok=True)
        (job_dir / CANCEL_FILE).write_text(utc_now() + "\n")
        wait_s = self.cancel_wait_s if wait_s is None else wait_s
        if wait_s <= 0:
            return job
        job = self._wait_terminal(job_id, wait_s)
        if job["status"] in TERMINAL:
            return job
        # Did not stop in time: SIGTERM (the job treats it as the same cancel), then SIGKILL.
        pid = job["pid"]
        if pid and self._alive(job_id, pid):
            self._signal(pid, signal.SIGTERM)
            job = self._wait_terminal(job_id, 10.0)
            if job["status"] in TERMINAL:
                return job
            self._signal(pid, signal.SIGKILL)
            self._wait_dead(job_id, pid, 10.0)
        self._finish_cancelled(job_id)
        return self.get(job_id)

    def set_threads(self, job_id: str, threads: int) -> None:
        """Change a running job's torch threads from its next step (0 = all cores).

        The server calls this to keep its own threads plus the job's within the cores (FACTS.md: asking for
        more made both 30x slower), e.g. 1 while chats are busy and all cores while they are idle.
        """
        if not isinstance(threads, int) or threads < 0:
            raise ValueError(f"threads must be an integer >= 0 (0 = all cores), got {threads!r}")
        job_dir = self.jobs_dir / job_id
        if not job_dir.is_dir():
            raise JobNotFoundError(f"no training job {job_id!r}")
        tmp = job_dir / f".{THREADS_FILE}.tmp"
        tmp.write_text(f"{threads}\n")
        os.replace(tmp, job_dir / THREADS_FILE)  # the job never reads a half-written number

    def reap(self) -> list[str]:
        """Settle active jobs whose process is gone or hung; returns the ids it changed.

        Dead process → failed (resume() continues it); no heartbeat for stale_after_s → killed, failed;
        a cancel ignored for cancel_wait_s → killed, cancelled.
        """
        changed = []
        with self._db() as conn:
            rows = conn.execute(
                "SELECT * FROM training_jobs WHERE status IN ('queued', 'running')"
            ).fetchall()
        for row in rows:
            job_id, pid = row["id"], row["pid"]
            alive = pid is not None and self._alive(job_id, pid)
            cancel_file = self.jobs_dir / job_id / CANCEL_FILE
            if not alive:
                if pid is None and _age_s(row["created_at"]) < self.stale_after_s:
                    continue  # being launched right now
                if cancel_file.exists():
                    self._finish_cancelled(job_id)
                else:
                    code = self._exit_code(job_id)  # None: not our child (started before a restart)
                    if code is None:
                        how = "exit status unknown"
                    elif code < 0:
                        how = f"killed by signal {-code}"
                    else:
                        how = f"exit code {code}"
                    self._finish(
                        job_id,
                        "failed",
                        f"the job process (pid {pid}) ended without reporting ({how}); "
                        f"see {self._log(job_id)}. "
                        "resume() continues from its last checkpoint.",
                    )
                changed.append(job_id)
            elif _age_s(row["heartbeat_at"] or row["started_at"] or row["created_at"]) > self.stale_after_s:
                self._signal(pid, signal.SIGKILL)
                self._wait_dead(job_id, pid, 10.0)
                self._finish(
                    job_id,
                    "failed",
                    f"no heartbeat for over {self.stale_after_s:.0f} s: "
                    f"killed the hung job process (pid {pid}); "
                    f"see {self._log(job_id)}. resume() continues from its last checkpoint.",
                )
                changed.append(job_id)
            elif (
                cancel_file.exists() and _age_s(cancel_file.read_text().strip() or None) > self.cancel_wait_s
            ):
                self._signal(pid, signal.SIGKILL)
                self._wait_dead(job_id, pid, 10.0)
                self._finish_cancelled(job_id)
                changed.append(job_id)
        return changed

    def wait(self, job_id: str, timeout_s: float = 600.0, poll_s: float = 0.2) -> dict[str, Any]:
        """Block until the job ends (reaping it if its process dies); TimeoutError after timeout_s."""
        deadline = time.monotonic() + timeout_s
        while True:
            job = self.get(job_id)
            if job["status"] in TERMINAL:
                return job
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {job['status']} after {timeout_s:.0f} s")
            self.reap()
            time.sleep(poll_s)

    # -- internals -----------------------------------------------------------

    def _log(self, job_id: str) -> Path:
        return self.jobs_dir / job_id / LOG_FILE

    def _refuse_if_active(self, conn: sqlite3.Connection) -> None:
        active = conn.execute(
            "SELECT id, status FROM training_jobs WHERE status IN ('queued', 'running')"
        ).fetchone()
        if active is not None:
            raise JobAlreadyRunningError(
                f"training job {active['id']} is {active['status']}; wait for it to finish or cancel it first"
            )

    def _launch(self, job_id: str, config: JobConfig) -> None:
        job_dir = self.jobs_dir / job_id
        job_dir.mkdir(parents=True, exist_ok=True)
        threads = resolve_threads(config.threads)
        env = dict(os.environ)
        env.update(
            thread_env(threads)
        )  # OpenMP/MKL read these once, at import: set them before the process starts
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH")) if p)
        env.setdefault("HF_HUB_OFFLINE", "1")
        env["HF_DATASETS_DISABLE_PROGRESS_BARS"] = "1"
        env["PYTHONUNBUFFERED"] = "1"  # the log shows progress live
        # glibc keeps freed tensors' memory in its heap by default; mmap big blocks so RSS falls when they go.
        env.setdefault("MALLOC_MMAP_THRESHOLD_", str(4 << 20))
        command = [
            sys.executable, "-m", "training.jobs", "run", job_id,
            "--data-dir", str(self.data_dir), "--model-dir", str(self.model_dir),
            "--db-path", str(self.db_path), "--heartbeat-s", str(self.heartbeat_s), "--nice", str(self.nice),
        ]  # fmt: skip
        try:
            with self._log(job_id).open("ab") as log:
                log.write(f"=== {utc_now()} launching {' '.join(command)} (threads={threads})\n".encode())
                log.flush()
                # os.nice happens in the child's entry point, not in preexec_fn: preexec_fn can deadlock a
                # parent that runs threads (the server does), per the subprocess docs.
                proc = subprocess.Popen(
                    command, cwd=PROJECT_ROOT, env=env,
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    start_new_session=True,  # a Ctrl-C in the server's terminal must not kill the job
                )  # fmt: skip
        except OSError as exc:
            self._finish(job_id, "failed", f"could not launch the job process: {exc}")
            raise
        with self._lock:
            self._children[job_id] = proc
        with self._db() as conn, transaction(conn):
            conn.execute("UPDATE training_jobs SET pid = ? WHERE id = ? AND pid IS NULL", [proc.pid, job_id])

    def _exit_code(self, job_id: str) -> int | None:
        with self._lock:
            proc = self._children.get(job_id)
        return proc.poll() if proc is not None else None

    def _alive(self, job_id: str, pid: int) -> bool:
        """Is `pid` still this job's process? (Our own child is polled, which also reaps its zombie.)"""
        with self._lock:
            proc = self._children.get(job_id)
        if proc is not None and proc.pid == pid:
            return proc.poll() is None
        cmdline = _proc_cmdline(pid)  # a job started by another server process, or before a restart
        return cmdline is not None and "training.jobs" in cmdline and job_id in cmdline

    def _wait_dead(self, job_id: str, pid: int, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while self._alive(job_id, pid) and time.monotonic() < deadline:
            time.sleep(0.05)

    def _wait_terminal(self, job_id: str, timeout_s: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        job = self.get(job_id)
        while job["status"] not in TERMINAL and time.monotonic() < deadline:
            if job["pid"] and not self._alive(job_id, job["pid"]):
                self.reap()  # it died instead of reporting
            time.sleep(0.1)
            job = self.get(job_id)
        return job

    def _signal(self, pid: int, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)

    def _finish(self, job_id: str, status: str, error: str | None) -> bool:
        """Settle an active job; False if it had already settled (the process reported an instant ago)."""
        with self._db() as conn, transaction(conn):
            cursor = conn.execute(
                "UPDATE training_jobs SET status = ?, error = ?, finished_at = ? "
                "WHERE id = ? AND status IN ('queued', 'running')",
                [status, error, utc_now(), job_id],
            )
        return cursor.rowcount > 0

    def _finish_cancelled(self, job_id: str) -> None:
        if self._finish(job_id, "cancelled", None):
            discard_outputs(self.jobs_dir / job_id, self.adapters_dir)


# -- the job process ------------------------------------------------------------


class _JobReporter:
    """The job process's side: status, heartbeat and progress rows, through its own connections."""

    def __init__(self, db_path: Path, job_id: str, heartbeat_s: float) -> None:
        self.db_path = db_path
        self.job_id = job_id
        self.pid = os.getpid()
        self.conn = connect(db_path)
        self._stop = threading.Event()
        self._heartbeat_s = heartbeat_s
        self._thread = threading.Thread(target=self._beat, name="job-heartbeat", daemon=True)

    def claim(self) -> sqlite3.Row | None:
        """queued → running, atomically; None if the job is not queued (e.g. cancelled before it started)."""
        with transaction(self.conn):
            row = self.conn.execute("SELECT * FROM training_jobs WHERE id = ?", [self.job_id]).fetchone()
            if row is None or row["status"] != "queued":
                return None
            now = utc_now()
            self.conn.execute(
                "UPDATE training_jobs SET status = 'running', pid = ?, started_at = ?, heartbeat_at = ?, "
                "error = NULL "
                "WHERE id = ?",
                [self.pid, now, now, self.job_id],
            )
        self._thread.start()
        return row

    def _beat(self) -> None:
        # A thread of its own (no torch ops here), so a long trainer construction or save still beats.
        conn = connect(self.db_path)
        try:
            while not self._stop.wait(self._heartbeat_s):
                with contextlib.suppress(sqlite3.Error), transaction(conn):
                    conn.execute(
                        "UPDATE training_jobs SET heartbeat_at = ? WHERE id = ? AND pid = ?",
                        [utc_now(), self.job_id, self.pid],
                    )
        finally:
            conn.close()

    def progress(self, event: dict[str, Any]) -> None:
        now = utc_now()
        with transaction(self.conn):
            self.conn.execute(
                "INSERT INTO job_progress (job_id, phase, step, total_steps, loss, reward_accuracy, "
                "reward_margin, tokens_per_s, eta_s, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    self.job_id, event.get("phase"), event.get("step"), event.get("total_steps"),
                    event.get("loss"),
                    event.get("reward_accuracy"), event.get("reward_margin"), event.get("tokens_per_s"),
                    event.get("eta_s"), now,
                ],
            )  # fmt: skip
            self.conn.execute(
                "UPDATE training_jobs SET phase = ?, step = ?, total_steps = ?, loss = COALESCE(?, loss), "
                "heartbeat_at = ? WHERE id = ? AND pid = ?",
                [
                    event.get("phase"), event.get("step"), event.get("total_steps"), event.get("loss"), now,
                    self.job_id, self.pid,
                ],
            )  # fmt: skip
        line = {k: v for k, v in event.items() if v is not None}
        print(f"progress {json.dumps(line)}", flush=True)

    def finish(
        self, status: str, *, error: str | None = None, version: str | None = None, data: dict[str, Any]
    ) -> None:
        self._stop.set()
        with transaction(self.conn):
            self.conn.execute(
                "UPDATE training_jobs SET status = ?, error = ?, version = ?, finished_at = ?, data_json = ? "
                "WHERE id = ? AND pid = ?",
                [status, error, version, utc_now(), json.dumps(data), self.job_id, self.pid],
            )
        print(
            f"=== {utc_now()} {status}"
            + (f": {error}" if error else "")
            + (f" → {version}" if version else "")
        )


def export_datasets(db_path: Path, out_dir: Path, curation: dict[str, Any] | None = None) -> Path:
    """Curate the feedback in the database and export TRL datasets into out_dir; a resume reuses them.

    `curation`: CurationConfig keyword arguments. Items that wait for review are queued for it and do not
    train until approved (feedback/review.py).
    """
    if (out_dir / "manifest.json").is_file():
        return out_dir  # a resumed job trains on the data it started with
    # Imported here: only a job that curates for itself needs the curation stack.
    from feedback.datasets import curate_store, curation_config
    from feedback.export import export_datasets as export
    from feedback.store import Store

    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    store = Store(db_path, synchronous="NORMAL")
    try:
        # The same curation as the admin Data tab: admins are trusted raters, plugin filters apply.
        export(curate_store(store, curation_config(store, **(curation or {}))), tmp)
    finally:
        store.close()
    os.replace(tmp, out_dir)
    return out_dir


def run_job(
    job_id: str,
    data_dir: Path,
    model_dir: Path,
    db_path: Path,
    heartbeat_s: float = 5.0,
    nice: int = JOB_NICE,
) -> int:
    """The job process: claim the job, train, publish, report. Returns the process exit code."""
    if nice:
        with contextlib.suppress(OSError):
            os.nice(nice)
    job_dir = data_dir / "jobs" / job_id
    adapters_dir = data_dir / "adapters"
    reporter = _JobReporter(db_path, job_id, heartbeat_s)
    row = reporter.claim()
    if row is None:
        print(f"job {job_id} is not queued; nothing to do", file=sys.stderr)
        return 2
    data = json.loads(row["data_json"] or "{}")
    cancel_requested = threading.Event()
    # SIGTERM means "cancel": stop after this step and clean up, instead of dying mid-save.
    signal.signal(signal.SIGTERM, lambda signum, frame: cancel_requested.set())

    def should_stop() -> bool:
        return cancel_requested.is_set() or (job_dir / CANCEL_FILE).exists()

    try:
        config = JobConfig.from_dict(json.loads(row["config_json"]))
        given = data.get("datasets_dir")
        if given:
            datasets_dir = Path(given)
        else:
            datasets_dir = export_datasets(db_path, job_dir / "datasets", data.get("curation"))
        if should_stop():
            raise TrainingCancelled("cancelled before training")
        result = run_pipeline(
            job_dir,
            model_dir,
            datasets_dir,
            config,
            reporter.progress,
            adapters_dir=adapters_dir,
            should_stop=should_stop,
            parent=data.get("parent"),
        )
    except NotEnoughDataError as exc:
        reporter.finish(
            "not_enough_data", error=str(exc), data={**data, "counts": exc.counts, "needed": exc.needed}
        )
        return 0
    except BaseException as exc:
        if isinstance(exc, TrainingCancelled) or should_stop():
            discard_outputs(job_dir, adapters_dir)
            reporter.finish("cancelled", data=data)
            return 0
        traceback.print_exc()
        reporter.finish(
            "failed",
            error=f"{type(exc).__name__}: {exc} — see {job_dir / LOG_FILE}; "
            "resume() continues from the last checkpoint",
            data=data,
        )
        return 1
    data["result"] = {k: result[k] for k in ("stages", "counts", "planned_steps", "metrics")}
    if data.get("gate"):
        from training.gate_step import run_gate
        from training.threads import resolve_threads

        step = sum((result.get("planned_steps") or {}).values())  # keeps the job's step count where it was
        gate = run_gate(
            job_dir,
            adapters_dir,
            model_dir,
            result["version"],
            data.get("parent"),
            datasets_dir,
            resolve_threads(config.threads),
            reporter.progress,
            step,
        )
        data["gate"] = {"passed": gate.get("passed"), "error": gate.get("error")}
    reporter.finish("succeeded", version=result["version"], data=data)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.jobs", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a queued job (JobManager.start launches this)")
    run.add_argument("job_id")
    run.add_argument("--data-dir", type=Path, required=True)
    run.add_argument("--model-dir", type=Path, required=True)
    run.add_argument("--db-path", type=Path, help="default: DATA_DIR/assistant.db")
    run.add_argument("--heartbeat-s", type=float, default=5.0)
    run.add_argument("--nice", type=int, default=JOB_NICE, help="niceness increment (default %(default)s)")
    args = parser.parse_args(argv)
    db_path = args.db_path or args.data_dir / "assistant.db"
    return run_job(args.job_id, args.data_dir, args.model_dir, db_path, args.heartbeat_s, args.nice)


if __name__ == "__main__":
    sys.exit(main())
