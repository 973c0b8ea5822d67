"""The server's side of training: start/cancel jobs, hand cores over, schedule, and act on results.

A background watcher (every `poll_s`):
- reaps jobs whose process died (heartbeat) so they show as failed and can be resumed;
- hands cores over: while a job runs the engine drops to `serving_threads_during_training` threads and
  the job takes the rest (two processes asking for all cores ran 30× slower, FACTS.md); while no chat
  arrived for `lend_idle_cores_after_s` the job borrows the server's core too, and returns it from its
  next optimizer step once one does;
- registers a finished job's version with its gate report, then applies the promotion policy
  (auto_promote → live; canary_share > 0 → canary; else it waits for an admin);
- the scheduler starts a job when enough new curated items exist and the minimum interval has passed.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from .context import AppContext
from .errors import AssistantError

log = logging.getLogger(__name__)


class JobConflictError(AssistantError):
    status = 409
    code = "job_running"


class JobMissingError(AssistantError):
    status = 404
    code = "job_not_found"


class TrainRequest(BaseModel):
    config: dict[str, Any] | None = Field(
        None, description="JobConfig overrides, e.g. {'sft': {'max_steps': 40}}"
    )


class TrainingService:
    def __init__(self, ctx: AppContext, *, poll_s: float = 2.0) -> None:
        from training.jobs import JobManager

        self.ctx = ctx
        self.jobs = JobManager(ctx.settings, ctx.model_dir)
        self.poll_s = poll_s
        self.serving_threads_during_training = 1
        # A job started with automatic threads gets every core while no chat arrived for this long, and
        # hands one back (from its next optimizer step) as soon as one does.
        self.lend_idle_cores_after_s = 10.0
        self._job_threads: dict[str, int] = {}  # jobs started with automatic threads → their count now
        self._handled: set[str] = set(
            j["id"]
            for j in self.jobs.list_jobs(limit=500)
            if j["status"] in ("succeeded", "failed", "cancelled")
        )
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._training_threads_applied = False
        self._last_schedule_check = 0.0
        self.last_error: str | None = None

    # ----------------------------------------------------------------------------- actions
    def start(self, config: dict[str, Any] | None = None, by: str = "admin") -> str:
        from training import JobAlreadyRunningError
        from training.config import JobConfig

        try:
            job_config = JobConfig.from_dict(config or {})
        except (ValueError, TypeError) as exc:
            raise _BadConfig(f"invalid job config: {exc}") from None
        auto_threads = job_config.threads == 0
        if auto_threads:
            # Cores are a budget: the server keeps one for chats, the job takes the rest (never both all);
            # _apply_threads lends the job the server's core too while nobody chats.
            from training.threads import available_cores

            job_config = job_config.replace(
                threads=max(1, available_cores() - self.serving_threads_during_training)
            )
        router = self.ctx.extras.get("router")
        parent = self.ctx.engine.live_version if self.ctx.engine is not None else None
        try:
            job_id = self.jobs.start(
                job_config,
                parent=None if parent in (None, "base") else parent,
                curation={"require_review": self.ctx.settings.require_review},
                gate=True,
            )
        except JobAlreadyRunningError as exc:
            raise JobConflictError(str(exc)) from None
        if auto_threads:
            self._job_threads[job_id] = job_config.threads
        log.info("training job %s started by %s (router: %s)", job_id, by, bool(router))
        self._apply_threads()
        return job_id

    def get(self, job_id: str) -> dict[str, Any]:
        from training import JobNotFoundError

        try:
            return self.jobs.get(job_id)
        except JobNotFoundError as exc:
            raise JobMissingError(str(exc)) from None

    def cancel(self, job_id: str) -> dict[str, Any]:
        self.get(job_id)
        return self.jobs.cancel(job_id, wait_s=0)

    def resume(self, job_id: str) -> dict[str, Any]:
        from training import TrainingError

        try:
            self.jobs.resume(job_id)
        except TrainingError as exc:
            raise JobConflictError(str(exc)) from None
        return self.get(job_id)

    def log_tail(self, job_id: str, lines: int = 30) -> str:
        path = Path(self.get(job_id)["log_path"])
        if not path.is_file():
            return ""
        with path.open("rb") as fh:
            fh.seek(max(0, path.stat().st_size - 16_000))
            text = fh.read().decode("utf-8", "replace")
        return "\n".join(text.splitlines()[-lines:])

    # ----------------------------------------------------------------------------- watcher
    def start_watcher(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._watch, name="training-watcher", daemon=True)
            self._thread.start()

    def stop_watcher(self) -> None:
        self._stop.set()

    def _watch(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                self.tick()
            except Exception as exc:  # the watcher must survive anything a job leaves behind
                self.last_error = str(exc)
                log.exception("training watcher")

    def tick(self) -> None:
        """One round of the watcher; callable directly (tests, CLI)."""
        self.jobs.reap()
        self._apply_threads()
        for job in self.jobs.list_jobs(limit=20):
            if job["id"] in self._handled or job["status"] in ("queued", "running"):
                continue
            self._handled.add(job["id"])
            if job["status"] == "succeeded" and job.get("version"):
                self._on_new_version(job)
        self._maybe_schedule()

    def _apply_threads(self) -> None:
        engine = self.ctx.engine
        if engine is None or not hasattr(engine, "set_threads"):
            return
        active = self.jobs.active_job()
        running = active is not None
        if running and not self._training_threads_applied:
            engine.set_threads(self.serving_threads_during_training)
            self._training_threads_applied = True
        elif not running and self._training_threads_applied:
            engine.set_threads(self.ctx.settings.threads)
            self._training_threads_applied = False
        if active is not None and active["id"] in self._job_threads:
            self._lend_idle_cores(active["id"], engine)

    def job_threads_now(self, engine: Any) -> int:
        """Threads a running auto-threaded job should use: all cores while chats are idle, else one less."""
        from training.threads import available_cores

        cores = available_cores()
        stats = engine.stats() if hasattr(engine, "stats") else {}
        idle_for = time.monotonic() - getattr(engine, "last_request_at", float("-inf"))
        busy = bool(stats.get("running") or stats.get("waiting")) or idle_for < self.lend_idle_cores_after_s
        return max(1, cores - self.serving_threads_during_training) if busy else cores

    def _lend_idle_cores(self, job_id: str, engine: Any) -> None:
        from training import JobNotFoundError

        wanted = self.job_threads_now(engine)
        if self._job_threads.get(job_id) == wanted:
            return
        try:
            self.jobs.set_threads(job_id, wanted)
        except (JobNotFoundError, OSError):
            return  # the job just ended and its directory went; nothing to hand over
        self._job_threads[job_id] = wanted
        log.info("training job %s now uses %d thread(s)", job_id, wanted)

    def _on_new_version(self, job: dict[str, Any]) -> None:
        registry = self.ctx.extras.get("registry")
        router = self.ctx.extras.get("router")
        version = job["version"]
        if registry is None or router is None:
            return
        path = self.ctx.settings.adapters_dir / version
        try:
            registry.register(path)
        except AssistantError as exc:
            log.error("version %s was refused: %s", version, exc)
            return
        gate_path = self.ctx.settings.jobs_dir / job["id"] / "gate.json"
        passed = None
        if gate_path.is_file():
            report = json.loads(gate_path.read_text())
            passed = bool(report.get("passed"))
            registry.set_gate_report(version, report, passed)
        if not passed:
            log.info("version %s did not pass the gate; it waits for an admin", version)
            return
        if self.ctx.settings.auto_promote:
            router.promote(version, by="auto")
        elif self.ctx.settings.canary_share > 0:
            router.start_canary(version, self.ctx.settings.canary_share, by="auto")

    def _maybe_schedule(self) -> None:
        settings = self.ctx.settings
        if not settings.schedule_enabled or self.jobs.active_job() is not None:
            return
        now = time.monotonic()
        if now - self._last_schedule_check < max(30.0, self.poll_s):
            return
        self._last_schedule_check = now
        jobs = self.jobs.list_jobs(limit=1)
        last = jobs[0] if jobs else None
        if last is not None:
            created = _epoch(last.get("created_at"))
            if time.time() - created < settings.schedule_min_interval_s:
                return
        new_items = self.new_items_since(last)
        if new_items >= settings.schedule_min_new_items:
            log.info("scheduler: %d new curated items, starting a job", new_items)
            self.start(by="scheduler")

    def new_items_since(self, last_job: dict[str, Any] | None) -> int:
        """Curated train items now, minus those the last job trained on (from its datasets manifest)."""
        from feedback.datasets import curate_store, curation_config

        result = curate_store(
            self.ctx.store, curation_config(self.ctx.store, require_review=self.ctx.settings.require_review)
        )
        now = len(result.sft) + len(result.dpo) + len(result.kto)
        before = 0
        if last_job is not None:
            manifest = self.ctx.settings.jobs_dir / last_job["id"] / "datasets" / "manifest.json"
            if manifest.is_file():
                counts = json.loads(manifest.read_text()).get("counts", {})
                before = sum(v for k, v in counts.items() if not k.startswith("heldout"))
        return max(0, now - before)


class _BadConfig(AssistantError):
    status = 422
    code = "invalid_config"


def _epoch(iso: str | None) -> float:
    import datetime

    if not iso:
        return 0.0
    try:
        return datetime.datetime.fromisoformat(iso).timestamp()
    except ValueError:
        return 0.0


def job_summary(job: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "id",
        "status",
        "phase",
        "step",
        "total_steps",
        "loss",
        "version",
        "error",
        "created_at",
        "started_at",
        "finished_at",
    )
    return {k: job.get(k) for k in keys}


def build_training_router(ctx: AppContext, service: TrainingService) -> APIRouter:
    router = APIRouter()
    admin = Depends(ctx.extras["require_admin"])

    @router.post("/admin/train", dependencies=[admin])
    def train(body: TrainRequest | None = None) -> dict[str, Any]:
        job_id = service.start(body.config if body else None)
        return {"job_id": job_id, "status": service.get(job_id)["status"]}

    @router.get("/admin/jobs", dependencies=[admin])
    def jobs(limit: int = Query(20, ge=1, le=500)) -> dict[str, Any]:
        return {"data": [job_summary(j) for j in service.jobs.list_jobs(limit=limit)]}

    @router.get("/admin/jobs/{job_id}", dependencies=[admin])
    def job(job_id: str) -> dict[str, Any]:
        return job_summary(service.get(job_id))

    @router.get("/admin/jobs/{job_id}/progress", dependencies=[admin])
    def progress(job_id: str, since: int = Query(0, ge=0, le=2**62)) -> dict[str, Any]:
        service.get(job_id)
        return {"data": service.jobs.progress(job_id, since_id=since)}

    @router.post("/admin/jobs/{job_id}/cancel", dependencies=[admin])
    def cancel(job_id: str) -> dict[str, Any]:
        return job_summary(service.cancel(job_id))

    @router.post("/admin/jobs/{job_id}/resume", dependencies=[admin])
    def resume(job_id: str) -> dict[str, Any]:
        return job_summary(service.resume(job_id))

    return router


def attach_training(ctx: AppContext) -> None:
    if os.environ.get("ASSISTANT_DISABLE_TRAINING") == "1":
        return
    service = TrainingService(ctx)
    ctx.extras["training"] = service
    ctx.extras.setdefault("routers", []).append(build_training_router(ctx, service))
    if ctx.engine is not None:
        service.start_watcher()
