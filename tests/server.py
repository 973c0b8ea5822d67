"""A real server subprocess for tests: `python -m assistant serve` on a free port, ready when /health says so.

    with running_server(tmp_path / "data", model_path=tiny_model_dir) as server:
        base_url, admin_token, admin_password, data_dir, process = server
        ...

`start_server` / `stop_server` are the same without the context manager (the crash test kills and restarts
on one data dir). No sleeps as synchronisation: readiness is polled with a deadline, and a server that
exits or never gets ready fails with the tail of its log.
"""

from __future__ import annotations

import os
import secrets
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.helpers import free_port

REPO = Path(__file__).resolve().parent.parent
READY_TIMEOUT_S = 180.0  # a cold start with the real model converts the GGUF first (~10-20 s)


@dataclass
class Server:
    """A running server. Unpacks as (base_url, admin_token, admin_password, data_dir, process)."""

    base_url: str
    admin_token: str
    admin_password: str
    data_dir: Path
    process: subprocess.Popen[bytes]
    log_path: Path
    ready_s: float = 0.0
    env: dict[str, str] = field(default_factory=dict)

    def __iter__(self) -> Iterator[Any]:
        return iter((self.base_url, self.admin_token, self.admin_password, self.data_dir, self.process))

    @property
    def db_path(self) -> Path:
        return self.data_dir / "assistant.db"

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def admin_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_token}"}

    def db(self) -> sqlite3.Connection:
        """A read-only connection to the server's database (the server stays its only writer)."""
        return connect_ro(self.db_path)


def connect_ro(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    conn.row_factory = sqlite3.Row
    return conn


def server_env(admin_token: str, admin_password: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASSISTANT_")}
    env.update(
        HF_HUB_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
        GRADIO_ANALYTICS_ENABLED="False",
        PYTHONUNBUFFERED="1",
        ASSISTANT_ADMIN_TOKEN=admin_token,
        ASSISTANT_ADMIN_PASSWORD=admin_password,
    )
    env.update(extra or {})
    return env


def serve_command(port: int, data_dir: str, model_path: Path | str | None = None) -> list[str]:
    """The `python -m assistant serve` command line every test server runs (None = the bundled model)."""
    cmd = [sys.executable, "-m", "assistant", "serve", "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--data-dir", data_dir]
    if model_path is not None:
        cmd += ["--model-path", str(model_path)]
    return cmd


def start_server(
    data_dir: Path,
    *,
    model_path: Path | str | None,
    env: dict[str, str] | None = None,
    port: int | None = None,
    admin_token: str | None = None,
    admin_password: str | None = None,
    ready_timeout: float = READY_TIMEOUT_S,
    log_path: Path | None = None,
) -> Server:
    """Start `python -m assistant serve` and return once /health reports ready.

    `model_path=None` serves the real bundled model; pass the tiny model's directory for fast tests.
    `env` adds ASSISTANT_* settings (e.g. ASSISTANT_FEEDBACK_RATE_PER_MINUTE).
    """
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    admin_token = admin_token or secrets.token_urlsafe(24)
    admin_password = admin_password or "pw-" + secrets.token_urlsafe(12)
    full_env = server_env(admin_token, admin_password, env)
    cmd = serve_command(port, str(data_dir), model_path)
    # Append: a restarted server on the same data dir keeps the earlier log above its own.
    log_path = log_path or data_dir.parent / f"{data_dir.name}-server.log"
    started = time.monotonic()
    with log_path.open("ab") as log_fh:
        process = subprocess.Popen(
            cmd, cwd=REPO, env=full_env, stdout=log_fh, stderr=subprocess.STDOUT, start_new_session=True
        )
    server = Server(
        f"http://127.0.0.1:{port}", admin_token, admin_password, data_dir, process, log_path, env=full_env
    )
    try:
        wait_ready(server, ready_timeout)
    except BaseException:
        stop_server(server, kill=True)
        raise
    server.ready_s = time.monotonic() - started
    return server


def wait_ready(server: Server, timeout: float) -> None:
    """Poll /health until it says ready; fail at once if the process exits."""
    deadline = time.monotonic() + timeout
    last: str = "no answer yet"
    with httpx.Client(timeout=2.0) as client:
        while True:
            code = server.process.poll()
            if code is not None:
                raise RuntimeError(
                    f"server exited with code {code} before it was ready; log:\n{server.log()[-4000:]}"
                )
            try:
                response = client.get(f"{server.base_url}/health")
                if response.status_code == 200 and response.json().get("status") == "ready":
                    return
                last = f"HTTP {response.status_code}: {response.text[:200]}"
            except httpx.HTTPError as exc:
                last = repr(exc)
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"server not ready within {timeout:.0f} s (last: {last}); log:\n{server.log()[-4000:]}"
                )
            # Pace the polls by waiting on the process itself: an exit ends the wait at once.
            try:
                server.process.wait(timeout=0.05)
            except subprocess.TimeoutExpired:
                pass


def stop_server(server: Server, *, kill: bool = False, timeout: float = 15.0) -> int | None:
    """SIGKILL (`kill=True`, a crash) or SIGTERM then SIGKILL after `timeout`; returns the exit code."""
    process = server.process
    if process.poll() is not None:
        return process.returncode
    if kill:
        process.send_signal(signal.SIGKILL)
        return process.wait(timeout=timeout)
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGKILL)
        return process.wait(timeout=timeout)


@contextmanager
def running_server(data_dir: Path, **kwargs: Any) -> Iterator[Server]:
    """`start_server` as a context manager: the process is stopped (and reaped) on exit."""
    server = start_server(data_dir, **kwargs)
    try:
        yield server
    finally:
        stop_server(server)


def link_model_cache(data_dir: Path, shared_cache: Path) -> None:
    """Point `data_dir/model-cache` at an existing conversion so the real model starts in seconds."""
    data_dir.mkdir(parents=True, exist_ok=True)
    link = data_dir / "model-cache"
    if not link.exists():
        link.symlink_to(shared_cache.resolve(), target_is_directory=True)
