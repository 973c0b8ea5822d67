"""Training jobs as real subprocesses on the tiny model: run, progress, too little data, cancel, kill, resume.

    .venv/bin/pytest tests/test_jobs.py -q

Every job is a real `python -m training.jobs run` process; `step_pause_s` slows a job down enough to
cancel or kill it mid-training.
"""

from __future__ import annotations

import datetime
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from assistant.model import sha256_file
from assistant.settings import Settings
from tests.test_training import tiny_config, write_datasets
from training import JobAlreadyRunningError
from training.config import SFTSettings
from training.jobs import JobManager, connect, transaction
from training.pipeline import version_ids
from training.threads import available_cores


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data")


@pytest.fixture
def jobs(settings: Settings, tiny_model_dir: Path) -> JobManager:
    # nice=0: on a shared test box a niced job would wait behind every other process.
    return JobManager(settings, tiny_model_dir, stale_after_s=60, cancel_wait_s=20, heartbeat_s=0.5, nice=0)


def wait_for(what: str, check: Callable[[], Any], timeout_s: float = 90.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def slow_config(**sft: Any) -> Any:
    """SFT only, paused between steps: a window to cancel or kill the job mid-training."""
    settings = {
        "max_steps": 40,
        "batch_size": 4,
        "learning_rate": 1e-2,
        "max_length": 96,
        "save_steps": 2,
        **sft,
    }
    return tiny_config(preference="none", step_pause_s=0.4, sft=SFTSettings(**settings))


def seed_feedback(db_path: Path, topics: list[str]) -> None:
    """Users correct one answer each: every correction becomes an SFT item, a DPO pair and a KTO 👎."""
    from feedback.store import Store

    with Store(db_path) as store:
        for i, topic in enumerate(topics):
            rater = f"user{i % 6}"  # curation caps each rater's share of the data
            conversation = store.create_conversation(rater)
            question = f"How do {topic} work?"
            asked = store.record_message(conversation_id=conversation, role="user", content=question)
            answer = store.record_message(
                conversation_id=conversation,
                role="assistant",
                content=f"Well, {topic} are complicated and I am not sure.",
                parent_id=asked,
                prompt=[{"role": "user", "content": question}],
            )
            store.add_rating(
                message_id=answer,
                rater=rater,
                rating="down",
                correction=f"In short: {topic} follow simple rules.",
            )


TOPICS = [
    "volcanoes",
    "tides",
    "bread",
    "magnets",
    "rainbows",
    "glaciers",
    "bees",
    "comets",
    "coffee",
    "clouds",
]


def test_a_job_curates_feedback_and_publishes_a_version(jobs: JobManager, settings: Settings) -> None:
    seed_feedback(settings.db_path, TOPICS)
    job_id = jobs.start(tiny_config())  # no datasets_dir: the job curates and exports the feedback itself
    job = jobs.wait(job_id, timeout_s=120)
    assert job["status"] == "succeeded", (job["error"], Path(job["log_path"]).read_text()[-3000:])
    assert job["version"] == "v0001" and job["finished_at"] and job["error"] is None
    assert job["step"] == job["total_steps"] == 5
    assert job["data"]["result"]["stages"] == ["sft", "dpo"]
    assert jobs.list_jobs()[0]["id"] == job_id

    rows = jobs.progress(job_id)
    steps = [row["step"] for row in rows]
    assert steps == sorted(steps) and steps[-1] == 5
    phases = [row["phase"] for row in rows]
    assert phases[0] == "prepare" and phases[-1] == "save" and phases.index("sft") < phases.index("dpo")
    assert any(row["reward_accuracy"] is not None for row in rows if row["phase"] == "dpo")
    assert jobs.progress(job_id, since_id=rows[-2]["id"]) == rows[-1:]

    version_dir = settings.adapters_dir / "v0001"
    manifest = json.loads((version_dir / "manifest.json").read_text())
    assert manifest["job_id"] == job_id
    export = json.loads((settings.jobs_dir / job_id / "datasets" / "manifest.json").read_text())
    assert manifest["dataset_hash"] == export["dataset_hash"] and export["counts"]["sft.jsonl"] >= 8
    assert all(sha256_file(version_dir / name) == digest for name, digest in manifest["files"].items())
    assert "progress" in Path(job["log_path"]).read_text()


def test_too_little_data_ends_not_enough_data(jobs: JobManager, settings: Settings, tmp_path: Path) -> None:
    datasets = write_datasets(tmp_path / "datasets", sft=2, kto=3)
    job = jobs.wait(jobs.start(tiny_config(), datasets), timeout_s=60)
    assert job["status"] == "not_enough_data"
    assert "2 SFT examples (need 4)" in job["error"] and "3 rated answers (need 4)" in job["error"]
    assert job["data"]["counts"] == {"sft": 2, "dpo": 0, "kto": 3}
    assert version_ids(settings.adapters_dir) == []


def test_cancel_stops_the_job_and_leaves_no_version(
    jobs: JobManager, settings: Settings, tmp_path: Path
) -> None:
    datasets = write_datasets(tmp_path / "datasets", sft=12)
    job_id = jobs.start(slow_config(), datasets)
    wait_for("training steps", lambda: any((r["step"] or 0) >= 2 for r in jobs.progress(job_id)))
    with pytest.raises(JobAlreadyRunningError, match=job_id):
        jobs.start(tiny_config(), datasets)
    if available_cores() > 1:  # the server hands the job a second core; it switches at its next step
        jobs.set_threads(job_id, 2)
        wait_for(
            "the thread change",
            lambda: "training with 2 threads" in Path(jobs.get(job_id)["log_path"]).read_text(),
        )

    job = jobs.cancel(job_id)
    assert job["status"] == "cancelled", Path(job["log_path"]).read_text()[-3000:]
    job_dir = settings.jobs_dir / job_id
    assert not (job_dir / "sft").exists() and (job_dir / "log.txt").is_file()
    assert version_ids(settings.adapters_dir) == []
    assert not list(settings.adapters_dir.glob(".tmp-*"))
    with pytest.raises(ValueError, match="cancelled job keeps no checkpoints"):
        jobs.resume(job_id)


def test_killed_job_is_reaped_and_resumes_from_its_checkpoint(
    jobs: JobManager, settings: Settings, tmp_path: Path
) -> None:
    datasets = write_datasets(tmp_path / "datasets", sft=12)
    job_id = jobs.start(slow_config(max_steps=6), datasets)
    checkpoint = settings.jobs_dir / job_id / "sft" / "checkpoint-2" / "trainer_state.json"
    wait_for("a checkpoint", checkpoint.is_file)
    pid = jobs.get(job_id)["pid"]
    os.kill(pid, signal.SIGKILL)

    assert wait_for("the reaper", lambda: jobs.reap()) == [job_id]
    job = jobs.get(job_id)
    assert job["status"] == "failed" and "killed by signal 9" in job["error"] and "resume()" in job["error"]
    assert jobs.reap() == []

    jobs.resume(job_id)
    job = jobs.wait(job_id, timeout_s=120)
    assert job["status"] == "succeeded", (job["error"], Path(job["log_path"]).read_text()[-3000:])
    assert job["version"] == "v0001" and job["pid"] != pid
    sft = job["data"]["result"]["metrics"]["sft"]
    assert sft["steps"] == 6 and sft["resumed_from_step"] >= 2
    with pytest.raises(ValueError, match="only failed jobs can be resumed"):
        jobs.resume(job_id)


def test_a_hung_job_is_killed_when_its_heartbeat_goes_stale(jobs: JobManager) -> None:
    # A stand-in for a hung job process: alive, named like a job, but its heartbeat is an hour old.
    job_id = "job_hung"
    hung = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", "training.jobs", job_id])
    try:
        an_hour_ago = (datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=1)).isoformat()
        conn = connect(jobs.db_path)
        with transaction(conn):
            conn.execute(
                "INSERT INTO training_jobs (id, status, pid, created_at, started_at, heartbeat_at) "
                "VALUES (?, 'running', ?, ?, ?, ?)",
                [job_id, hung.pid, an_hour_ago, an_hour_ago, an_hour_ago],
            )
        conn.close()
        assert jobs.reap() == [job_id]
        assert hung.wait(timeout=10) == -signal.SIGKILL  # the reaper killed it
    finally:
        hung.kill()
        hung.wait()
    job = jobs.get(job_id)
    assert job["status"] == "failed" and "no heartbeat for over 60 s" in job["error"]
    assert jobs.reap() == []
