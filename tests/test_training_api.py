"""The server's training surface: admin REST (401 / 409), a job that ends with the gate, and the watcher
registering the new version with its gate report. In-process app on the tiny model, real SQLite, real
job subprocess."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from assistant.settings import Settings
from tests.test_jobs import TOPICS, seed_feedback
from tests.test_training import tiny_config

TOKEN = "test-admin-token"


@pytest.fixture
def app_ctx(tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    import app as app_module

    monkeypatch.setenv("ASSISTANT_GATE_SUITE_ITEMS", "10")
    monkeypatch.setenv("ASSISTANT_GATE_MAX_NEW_TOKENS", "8")
    settings = Settings(
        data_dir=tmp_path / "data",
        model_path=str(tiny_model_dir),
        admin_token=TOKEN,
        admin_password="admin-password",
        threads=1,
    )
    ctx = app_module.build_context(settings)
    ctx.extras["training"].stop_watcher()  # the test drives the watcher with tick()
    yield ctx, TestClient(app_module.build_app(ctx))
    ctx.engine.stop()
    ctx.store.close()


def wait_job(client: TestClient, job_id: str, timeout_s: float = 240.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = client.get(f"/admin/jobs/{job_id}", headers=auth()).json()
        if job["status"] not in ("queued", "running"):
            return job
        time.sleep(0.5)  # polling a subprocess's status row
    raise AssertionError(f"job {job_id} did not end in {timeout_s} s")


def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}"}


def test_admin_training_routes_need_the_token(app_ctx: Any) -> None:
    _, client = app_ctx
    for method, path in (
        ("post", "/admin/train"),
        ("get", "/admin/jobs"),
        ("get", "/admin/jobs/x"),
        ("post", "/admin/jobs/x/cancel"),
        ("post", "/admin/jobs/x/resume"),
    ):
        assert getattr(client, method)(path).status_code == 401
        bad = {"Authorization": "Bearer wrong"}
        assert getattr(client, method)(path, headers=bad).status_code == 401
    assert client.get("/admin/jobs/nope", headers=auth()).status_code == 404
    response = client.post("/admin/train", headers=auth(), json={"config": {"epochs": 3}})
    assert response.status_code == 422 and "unknown job config keys" in response.json()["error"]["message"]


def test_a_job_runs_the_gate_and_its_version_is_registered(app_ctx: Any) -> None:
    ctx, client = app_ctx
    seed_feedback(ctx.settings.db_path, TOPICS)
    config = tiny_config().to_dict()
    first = client.post("/admin/train", headers=auth(), json={"config": config})
    assert first.status_code == 200, first.text
    job_id = first.json()["job_id"]
    second = client.post("/admin/train", headers=auth(), json={"config": config})
    assert second.status_code == 409  # one job at a time
    job = wait_job(client, job_id)
    assert job["status"] == "succeeded", job
    assert job["version"] == "v0001"
    gate = json.loads((ctx.settings.jobs_dir / job_id / "gate.json").read_text())
    assert isinstance(gate["passed"], bool) and gate.get("criteria"), gate
    phases = [
        row["phase"] for row in client.get(f"/admin/jobs/{job_id}/progress", headers=auth()).json()["data"]
    ]
    assert phases[-1] == "gate" and "sft" in phases

    ctx.extras["training"].tick()  # the watcher: register the version with its gate report
    versions = client.get("/admin/versions", headers=auth()).json()
    rows = versions.get("data", versions.get("versions", versions))
    row = next(r for r in rows if r["id"] == "v0001")
    assert bool(row.get("gate_passed")) == gate["passed"]
    if not gate["passed"]:  # a failed gate blocks promotion unless forced
        assert client.post("/admin/versions/v0001/promote", headers=auth(), json={}).status_code == 409
    forced = client.post("/admin/versions/v0001/promote", headers=auth(), json={"force": True})
    assert forced.status_code == 200, forced.text
    assert ctx.engine.live_version == "v0001"
    reply = client.post(
        "/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    )
    assert reply.status_code == 200 and reply.json()["system_fingerprint"] == "v0001"
    stored = ctx.store.get_message(reply.json()["id"])
    assert stored["adapter_version"] == "v0001"
    assert os.environ.get("ASSISTANT_GATE_SUITE_ITEMS") == "10"


def test_an_idle_server_lends_its_core_to_the_job_and_takes_it_back_for_a_chat(app_ctx: Any) -> None:
    from training.threads import available_cores

    cores = available_cores()
    if cores < 2:
        pytest.skip("needs 2 cores: with one there is nothing to lend")
    ctx, client = app_ctx
    service = ctx.extras["training"]
    seed_feedback(ctx.settings.db_path, TOPICS)
    # Automatic threads (0) and slow steps, so the job is still running while the test watches it.
    config = tiny_config(threads=0, step_pause_s=0.5, sft={"max_steps": 40, "batch_size": 4}).to_dict()
    job_id = client.post("/admin/train", headers=auth(), json={"config": config}).json()["job_id"]
    threads_file = ctx.settings.jobs_dir / job_id / "threads"
    log_path = Path(service.jobs.get(job_id)["log_path"])

    def wait_log(text: str) -> None:
        deadline = time.monotonic() + 120
        while text not in log_path.read_text() if log_path.is_file() else True:
            assert time.monotonic() < deadline, f"no {text!r} in the job log"
            time.sleep(0.3)  # polling the job's log: it applies a count between optimizer steps

    try:
        service.tick()  # nobody has chatted: the job gets every core
        assert threads_file.read_text().strip() == str(cores)
        assert ctx.engine.stats()["threads"] == service.serving_threads_during_training
        wait_log(f"training with {cores} threads")

        reply = client.post(
            "/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
        )
        assert reply.status_code == 200
        service.tick()  # a chat just arrived: the job hands a core back
        assert threads_file.read_text().strip() == str(cores - 1)
        wait_log(f"training with {cores - 1} threads from step")
    finally:
        client.post(f"/admin/jobs/{job_id}/cancel", headers=auth())
        wait_job(client, job_id)
    service.tick()
    assert ctx.engine.stats()["threads"] == ctx.settings.threads
