"""Build and serve the assistant: Settings → store → model/engine → HTTP API + Gradio UI on one port.

Run `make run` (or `python -m assistant serve`); http://127.0.0.1:7860 serves the UI, /v1/* the
OpenAI-compatible API, /admin/* the admin API, /health the status.
"""

from __future__ import annotations

import logging
import os
import secrets
import sys
import time
from pathlib import Path
from typing import Any

from assistant.context import AppContext
from assistant.settings import Settings

log = logging.getLogger("assistant")


def check_data_dir(path: Path) -> list[Path]:
    """Fail early, with what to do, when the data dir can't be written (read-only, full disk).

    Returns the directories it created (deepest first). A failed check leaves nothing behind: the probe
    file and those directories are removed.
    """
    missing = [p for p in (path, *path.parents) if not os.path.lexists(p)]  # deepest first
    probe = path / f".write-test-{os.getpid()}"
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"x" * 4096)
        probe.unlink()
    except OSError as exc:
        _remove_quietly([probe], missing)
        raise SystemExit(
            f"error: the data directory {path} is not writable ({exc.strerror or exc}). "
            "Free some disk space, fix its permissions, or point ASSISTANT_DATA_DIR elsewhere."
        ) from None
    return missing


def _remove_quietly(files: list[Path], dirs: list[Path]) -> None:
    """Best effort: remove files, then the (now empty) directories, deepest first."""
    for f in files:
        try:
            f.unlink(missing_ok=True)
        except OSError:
            pass
    for d in dirs:
        try:
            d.rmdir()
        except OSError:
            pass


def open_store(settings: Settings, created_dirs: list[Path] | None = None) -> Any:
    """The feedback store, with the admin user in it; a disk that fills up now fails with a message.

    A database this start created is removed again on failure, with `created_dirs` (no half-made files);
    an existing one is left exactly as it is.
    """
    import sqlite3

    from feedback.store import Store
    from feedback.users import ensure_admin

    path = settings.db_path
    fresh = not os.path.lexists(path)
    store = None
    try:
        store = Store(path)
        password = ensure_admin(store, settings.admin_password)
    except (sqlite3.Error, OSError) as exc:
        if store is not None:
            try:
                store.close()
            except Exception:
                pass
        if fresh:
            _remove_quietly(
                [Path(f"{path}{suffix}") for suffix in ("", "-wal", "-shm", "-journal")],
                list(created_dirs or []),
            )
        raise SystemExit(
            f"error: could not set up the database {path} ({exc}). "
            "Free some disk space, fix its permissions, or point ASSISTANT_DATA_DIR elsewhere."
        ) from None
    if password and not settings.admin_password:
        print(
            f"Created user 'admin' with password: {password}  (shown once; change it in the Account tab)",
            flush=True,
        )
    return store


def load_admin_token(settings: Settings) -> tuple[str, bool]:
    """The admin API token: from the environment, else from data/admin-token (created 0600 once)."""
    if settings.admin_token:
        return settings.admin_token, False
    path = settings.admin_token_path
    if path.is_file():
        return path.read_text().strip(), False
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(token + "\n")
    return token, True


def build_context(settings: Settings, *, load_engine: bool = True) -> AppContext:
    from assistant.model import prepare_model_dir
    from assistant.plugins import build_engine

    # Absolute from here on: training jobs run in another working directory (the project root), and a
    # relative data dir (the default ./data) would point them at another database.
    settings = settings.replace(data_dir=settings.data_dir.resolve())
    created_dirs = check_data_dir(settings.data_dir)
    store = open_store(settings, created_dirs)
    token, created = load_admin_token(settings)
    if created:
        print(f"Admin API token (saved in {settings.admin_token_path}): {token}", flush=True)
    model_dir, model_id = prepare_model_dir(settings.model_path, settings.data_dir)
    engine = None
    if load_engine:
        # The backend's factory starts it: "transformers" (torch here, assistant/builtin_plugins.py),
        # "remote" when settings.backend_url is set (assistant/remote.py), or a plugin's.
        engine = build_engine(settings, model_dir, model_id)
    ctx = AppContext(
        settings=settings,
        engine=engine,
        store=store,
        model_dir=model_dir,
        model_id=model_id,
        admin_token=token,
    )
    from assistant.api import make_require_admin

    ctx.extras["require_admin"] = make_require_admin(ctx)  # admin routes of every part share it
    attach_extensions(ctx)
    return ctx


def attach_extensions(ctx: AppContext) -> None:
    """Parts that plug into the running app (training jobs, versions, routing) attach here."""
    from assistant.extensions import attach_all

    attach_all(ctx)


def build_app(ctx: AppContext) -> Any:
    import gradio as gr
    from fastapi import FastAPI

    from assistant.api import build_router, install_body_limit, install_error_handlers
    from assistant.security_headers import install_security_headers
    from assistant.ui.app import build_ui

    app = FastAPI(title="Assistant API", version="1")
    install_error_handlers(app)
    install_body_limit(app, ctx.settings.max_body_bytes)
    install_security_headers(app)
    app.include_router(build_router(ctx))
    for router in ctx.extras.get("routers", []):
        app.include_router(router)
    demo = build_ui(ctx)
    demo.queue(default_concurrency_limit=16, max_size=ctx.settings.queue_size * 2)
    # Routes first, then Gradio at "/": a route added after mounting at "/" is shadowed.
    # No component takes uploads: max_file_size keeps anonymous POSTs to /gradio_api/upload from filling
    # the disk with big files (they are cached under GRADIO_TEMP_DIR).
    return gr.mount_gradio_app(
        app,
        demo,
        path="/",
        show_error=True,
        blocked_paths=[str(ctx.settings.data_dir.resolve())],
        max_file_size=ctx.settings.max_body_bytes,
    )


def serve(settings: Settings) -> None:
    import uvicorn

    started = time.monotonic()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    ctx = build_context(settings)
    app = build_app(ctx)
    config = uvicorn.Config(
        app, host=settings.host, port=settings.port, log_level="warning", timeout_graceful_shutdown=5
    )
    server = uvicorn.Server(config)

    original_startup = server.startup

    async def startup(sockets: Any = None) -> None:
        await original_startup(sockets)
        print(
            f"Ready in {time.monotonic() - started:.1f} s: http://{settings.host}:{settings.port} "
            f"(model {ctx.model_id})",
            flush=True,
        )

    server.startup = startup  # type: ignore[method-assign]
    try:
        server.run()
    finally:
        if ctx.engine is not None:
            ctx.engine.stop()
        ctx.store.close()


if __name__ == "__main__":
    from assistant.cli import main

    sys.exit(main(["serve", *sys.argv[1:]]))
