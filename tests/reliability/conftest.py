"""Fixtures and helpers of the reliability and security suite (issue "Reliability and security").

Servers (each a real `python -m assistant serve` subprocess with the tiny model):
- `tiny_server` (tests/conftest.py, shared with the API/UI tests): high rate limits; access, files, DB lock.
- `limits_server` (here): low chat/feedback rates, a queue of 1, a batch of 1, a small max_tokens limit;
  started from a temporary working directory with the *relative* data dir `data` (the default layout).
- `fuzz_server` (here): the schemathesis target; admin calls with the token change its state freely.

Gradio calls go the way a browser (or an attacker) sends them: `POST /gradio_api/queue/join` with a
`fn_index` and a `session_hash`, the answer read from `GET /gradio_api/queue/data`.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import free_port
from tests.server import REPO, Server, serve_command, server_env, stop_server, wait_ready

ADMIN_TAB_TITLES = ("Feedback", "Data", "Training", "Models")

# Quick (make test) and full (make test-full) counts, one place.
QUICK = {"fuzz_cases": 300, "hypothesis_examples": 300, "load_s": 8.0, "raters": 8, "chatters": 2}
FULL = {"fuzz_cases": 10_000, "hypothesis_examples": 10_000, "load_s": 60.0, "raters": 32, "chatters": 8}

LIMITS_ENV = {
    "ASSISTANT_CHAT_RATE_PER_MINUTE": "6",
    "ASSISTANT_FEEDBACK_RATE_PER_MINUTE": "6",
    "ASSISTANT_QUEUE_SIZE": "1",
    "ASSISTANT_MAX_BATCH_SIZE": "1",
    "ASSISTANT_MAX_TOKENS_LIMIT": "48",
    "ASSISTANT_DEFAULT_MAX_TOKENS": "16",
    "ASSISTANT_MAX_MESSAGES": "20",
    "ASSISTANT_MAX_MESSAGE_CHARS": "2000",
    "ASSISTANT_THREADS": "1",
}
FUZZ_ENV = {
    "ASSISTANT_CHAT_RATE_PER_MINUTE": "1000000",
    "ASSISTANT_FEEDBACK_RATE_PER_MINUTE": "1000000",
    "ASSISTANT_MAX_TOKENS_LIMIT": "8",  # fuzzed chats stay short
    "ASSISTANT_DEFAULT_MAX_TOKENS": "8",
    "ASSISTANT_THREADS": "1",
}


def start_server_in(
    workdir: Path,
    *,
    model_path: Path,
    data_dir: str = "data",
    env: dict[str, str] | None = None,
    ready_timeout: float = 180.0,
) -> Server:
    """`python -m assistant serve` run from `workdir` (so a relative `data_dir` resolves there).

    tests/server.py always runs from the repository; this one runs from anywhere, like a deployment.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    token, password = secrets.token_urlsafe(24), "pw-" + secrets.token_urlsafe(12)
    full_env = server_env(token, password, env)
    full_env["PYTHONPATH"] = str(REPO) + os.pathsep + full_env.get("PYTHONPATH", "")
    cmd = serve_command(port, data_dir, Path(model_path).resolve())
    log_path = workdir / "server.log"
    with log_path.open("ab") as log_fh:
        process = subprocess.Popen(
            cmd, cwd=workdir, env=full_env, stdout=log_fh, stderr=subprocess.STDOUT, start_new_session=True
        )
    server = Server(
        f"http://127.0.0.1:{port}",
        token,
        password,
        (workdir / data_dir).resolve(),
        process,
        log_path,
        env=full_env,
    )
    started = time.monotonic()
    try:
        wait_ready(server, ready_timeout)
    except BaseException:
        stop_server(server, kill=True)
        raise
    server.ready_s = time.monotonic() - started
    return server


def kill_job_processes(server: Server) -> list[int]:
    """SIGKILL the training jobs this server started and left running (they run in their own sessions,
    so stopping the server does not stop them). Only pids recorded in its own database, and only while
    they still run `training.jobs` for that job."""
    import signal
    import sqlite3

    killed = []
    if not server.db_path.is_file():
        return killed
    try:
        with server.db() as db:
            rows = db.execute("SELECT id, pid FROM training_jobs WHERE pid IS NOT NULL").fetchall()
    except sqlite3.Error:
        return killed
    for row in rows:
        try:
            cmdline = Path(f"/proc/{row['pid']}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if "training.jobs" in cmdline and row["id"] in cmdline:
            os.kill(row["pid"], signal.SIGKILL)
            killed.append(row["pid"])
    return killed


def stop_and_clean(server: Server) -> None:
    stop_server(server)
    kill_job_processes(server)


@pytest.fixture(scope="session")
def limits_server(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_server_in(tmp_path_factory.mktemp("limits-cwd"), model_path=tiny_model_dir, env=LIMITS_ENV)
    try:
        yield server
    finally:
        stop_and_clean(server)


@pytest.fixture(scope="session")
def fuzz_server(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_server_in(tmp_path_factory.mktemp("fuzz-cwd"), model_path=tiny_model_dir, env=FUZZ_ENV)
    try:
        yield server
    finally:
        stop_and_clean(server)


# ------------------------------------------------------------------------------------------- Gradio
def new_session_hash() -> str:
    return uuid.uuid4().hex[:11]


def gradio_config(base_url: str) -> dict[str, Any]:
    response = httpx.get(f"{base_url}/config", timeout=30)
    response.raise_for_status()
    return response.json()


def _descendants(layout: dict[str, Any]) -> set[int]:
    out = {layout["id"]}
    for child in layout.get("children", []):
        out |= _descendants(child)
    return out


def admin_dependencies(config: dict[str, Any]) -> list[dict[str, Any]]:
    """Every event handler wired to a component of an admin tab, and every `.then` that follows one."""
    components = {c["id"]: c for c in config["components"]}
    tab_ids = {
        c["id"]
        for c in config["components"]
        if c["type"] == "tabitem" and c["props"].get("label") in ADMIN_TAB_TITLES
    }
    assert len(tab_ids) == len(ADMIN_TAB_TITLES), "every admin tab is in the config"

    def find(node: dict[str, Any]) -> list[dict[str, Any]]:
        found = [node] if node["id"] in tab_ids else []
        for child in node.get("children", []):
            found += find(child)
        return found

    inside: set[int] = set()
    for tab in find(config["layout"]):
        inside |= _descendants(tab)
    admin: dict[int, dict[str, Any]] = {}
    for dep in config["dependencies"]:
        if any(target is not None and target in inside for target, _ in dep["targets"]):
            admin[dep["id"]] = dep
    changed = True
    while changed:  # .then chains: triggered after an admin handler
        changed = False
        for dep in config["dependencies"]:
            if dep["id"] not in admin and dep.get("trigger_after") in admin:
                admin[dep["id"]] = dep
                changed = True
    assert all(components.get(t) is not None or t is None for d in admin.values() for t, _ in d["targets"])
    return sorted(admin.values(), key=lambda d: d["id"])


def dependency_by_api_name(config: dict[str, Any], api_name: str) -> dict[str, Any]:
    return next(d for d in config["dependencies"] if d.get("api_name") == api_name)


def default_inputs(config: dict[str, Any], dep: dict[str, Any], state: Any = None) -> list[Any]:
    """One value per input: the component's own default (as the page would send it); State → `state`."""
    components = {c["id"]: c for c in config["components"]}
    values = []
    for input_id in dep["inputs"]:
        component = components[input_id]
        if component["type"] == "state":
            values.append(state)
        else:
            values.append(component["props"].get("value"))
    return values


def gradio_call(
    base_url: str,
    dep: dict[str, Any],
    data: list[Any],
    session_hash: str,
    *,
    event_data: Any = None,
    timeout: float = 60.0,
) -> dict[str, Any]:
    """Run one handler through the queue, as a browser would; returns Gradio's final message.

    A join the server refuses outright comes back as {"msg": "join_refused", "status", "body"}.
    """
    trigger = dep["targets"][0][0] if dep["targets"] else None
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=base_url, timeout=timeout) as http:
        joined = http.post(
            "/gradio_api/queue/join",
            json={
                "data": data,
                "event_data": event_data,
                "fn_index": dep["id"],
                "trigger_id": trigger,
                "session_hash": session_hash,
            },
        )
        if joined.status_code != 200:
            return {
                "msg": "join_refused",
                "status": joined.status_code,
                "body": joined.text,
                "success": False,
            }
        event_id = joined.json()["event_id"]
        with http.stream("GET", "/gradio_api/queue/data", params={"session_hash": session_hash}) as stream:
            for line in stream.iter_lines():
                if time.monotonic() > deadline:
                    break
                if not line.startswith("data:"):
                    continue
                message = json.loads(line[5:])
                if message.get("event_id") == event_id and message.get("msg") == "process_completed":
                    return message
    raise AssertionError(f"no answer from fn_index {dep['id']} ({dep.get('api_name')}) in {timeout} s")


def is_noop_update(value: Any) -> bool:
    """gr.skip(): an update that changes nothing ({"__type__": "update"}, maybe with empty props)."""
    if not isinstance(value, dict) or value.get("__type__") != "update":
        return False
    return all(k == "__type__" or (k == "props" and set(v) <= {"__type__"}) for k, v in value.items())


def carries_data(message: dict[str, Any]) -> bool:
    """True when a finished Gradio event handed back something other than errors and no-op updates."""
    if not message.get("success"):
        return False
    output = message.get("output") or {}
    return not all(is_noop_update(value) for value in output.get("data") or [])


def sign_in(base_url: str, config: dict[str, Any], session_hash: str, name: str, password: str) -> str:
    """Sign in through the Account tab's handler; returns the status line."""
    dep = dependency_by_api_name(config, "do_sign_in")
    done = gradio_call(base_url, dep, [None, name, password], session_hash)
    assert done["success"], done
    return str(done["output"]["data"][1])
