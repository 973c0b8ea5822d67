"""Admin REST routes for versions, vLLM-compatible LoRA load/unload, the Models tab handlers, the CLI."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import gradio as gr
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from assistant.context import AppContext
from assistant.engine import BASE
from assistant.settings import Settings
from feedback.store import Store
from tests.helpers import free_port
from tests.test_registry import *  # noqa: F403  (fixtures: store, registry, make, ...)
from tests.test_registry import corrupt_truncate, make_version, wait_for

TOKEN = "test-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def build_test_app(ctx: AppContext) -> FastAPI:
    """The API part of app.build_app (no Gradio): error handlers, core routes, then the extension routes."""
    from assistant.api import build_router, install_error_handlers
    from assistant.versions_api import attach_versions

    attach_versions(ctx, start_monitor=False)
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(build_router(ctx))
    for router in ctx.extras["routers"]:
        app.include_router(router)
    return app


@pytest.fixture
def ctx(store: Store, tmp_path: Path, tiny_model_dir: Path, tiny_engine) -> AppContext:  # type: ignore[no-untyped-def]
    return AppContext(settings=Settings(data_dir=tmp_path), engine=tiny_engine, store=store,
                      model_dir=tiny_model_dir, model_id="tiny-llama", admin_token=TOKEN)


@pytest.fixture
def client(ctx: AppContext) -> Iterator[TestClient]:
    with TestClient(build_test_app(ctx)) as c:
        yield c


# ---------------------------------------------------------------------------- admin REST
ADMIN_CALLS = [
    ("GET", "/admin/versions", None),
    ("POST", "/admin/versions/v0001/promote", {"force": True}),
    ("POST", "/admin/versions/v0001/canary", {"share": 0.2}),
    ("POST", "/admin/canary/stop", {}),
    ("POST", "/admin/rollback", {"version": None}),
    ("POST", "/v1/load_lora_adapter", {"lora_name": "v0001", "lora_path": "/tmp"}),
    ("POST", "/v1/unload_lora_adapter", {"lora_name": "v0001"}),
]


def test_admin_routes_need_the_token(client: TestClient, ctx: AppContext, make) -> None:  # type: ignore[no-untyped-def]
    make("v0001")
    for method, path, body in ADMIN_CALLS:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
            response = client.request(method, path, json=body, headers=headers)
            assert response.status_code == 401, (path, headers)
            assert "admin token required" in response.json()["error"]["message"]
    assert ctx.engine.live_version == BASE and ctx.engine.loaded_versions == set()


def test_promote_canary_rollback_over_rest(client: TestClient, ctx: AppContext, make) -> None:  # type: ignore[no-untyped-def]
    engine = ctx.engine
    make("v0001")
    make("v0002", parent="v0001", gate=False)
    make("v0003", parent="v0001")

    listed = client.get("/admin/versions", headers=AUTH).json()
    assert [v["id"] for v in listed["data"]] == ["v0001", "v0002", "v0003"]
    assert listed["live"] is None and listed["canary"] is None
    assert listed["data"][1]["parent"] == "v0001" and listed["data"][1]["gate_passed"] is False

    assert client.post("/admin/versions/v0001/promote", headers=AUTH).status_code == 200
    assert engine.live_version == "v0001"

    refused = client.post("/admin/versions/v0002/promote", headers=AUTH, json={"force": False})
    assert refused.status_code == 409
    assert "failed the promotion gate" in refused.json()["error"]["message"]
    assert engine.live_version == "v0001"
    forced = client.post("/admin/versions/v0002/promote", headers=AUTH, json={"force": True})
    assert forced.status_code == 200 and forced.json()["forced"] is True
    assert engine.live_version == "v0002"

    assert client.post("/admin/versions/v0099/promote", headers=AUTH).status_code == 404
    assert client.post("/admin/versions/v0003/canary", headers=AUTH, json={"share": 1.5}).status_code == 422
    started = client.post("/admin/versions/v0003/canary", headers=AUTH, json={"share": 0.25})
    assert started.status_code == 200
    assert started.json()["canary"] == "v0003" and started.json()["canary_share"] == 0.25
    listed = client.get("/admin/versions", headers=AUTH).json()
    flags = {v["id"]: (v["live"], v["canary"], v["status"]) for v in listed["data"]}
    assert flags == {"v0001": (False, False, "retired"), "v0002": (True, False, "live"),
                     "v0003": (False, True, "canary")}
    assert listed["monitor"]["decision"] == "wait"

    stopped = client.post("/admin/canary/stop", headers=AUTH, json={"reject": True})
    assert stopped.status_code == 200 and stopped.json()["canary"] is None

    back = client.post("/admin/rollback", headers=AUTH, json={"version": "v0001"})
    assert back.status_code == 200 and engine.live_version == "v0001"
    base = client.post("/admin/rollback", headers=AUTH, json={"version": None})
    assert base.status_code == 200 and base.json()["live"] is None
    assert engine.live_version == BASE
    history = client.get("/admin/versions", headers=AUTH).json()["history"]
    assert history[0]["name"] == "live" and history[0]["version"] is None and history[0]["by"] == "admin"


def test_rejected_adapter_over_rest_leaves_live_alone(client: TestClient, ctx: AppContext, make,  # type: ignore[no-untyped-def]
                                                      base_info: dict[str, str]) -> None:
    make("v0001")
    client.post("/admin/versions/v0001/promote", headers=AUTH)
    bad = make("v0002")
    corrupt_truncate(Path(bad["path"]), base_info)
    response = client.post("/admin/versions/v0002/promote", headers=AUTH, json={"force": True})
    assert response.status_code == 422
    body = response.json()["error"]
    assert body["code"] == "adapter_rejected" and "truncated" in body["message"]
    assert ctx.engine.live_version == "v0001"


# ---------------------------------------------------------------------------- vLLM-compatible
def test_vllm_load_and_unload_lora_adapter(client: TestClient, ctx: AppContext, adapter_template: Path,
                                           base_info: dict[str, str], tmp_path: Path) -> None:
    outside = make_version(tmp_path / "incoming", "v0005", adapter_template, base_info)
    wrong_name = client.post("/v1/load_lora_adapter", headers=AUTH,
                             json={"lora_name": "my-lora", "lora_path": str(outside)})
    assert wrong_name.status_code == 400 and "version id 'v0005'" in wrong_name.json()["error"]["message"]

    loaded = client.post("/v1/load_lora_adapter", headers=AUTH,
                         json={"lora_name": "v0005", "lora_path": str(outside)})
    assert loaded.status_code == 200, loaded.text
    assert loaded.text == "Success: LoRA adapter 'v0005' added successfully."
    assert "v0005" in ctx.engine.loaded_versions and ctx.engine.live_version == BASE
    assert (ctx.settings.adapters_dir / "v0005" / "manifest.json").is_file()  # registered, copied in
    models = [m["id"] for m in client.get("/v1/models").json()["data"]]
    assert "v0005" in models

    chat = client.post("/v1/chat/completions", json={
        "model": "v0005", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4, "temperature": 0})
    assert chat.status_code == 200 and chat.json()["model"] == "v0005"

    again = client.post("/v1/load_lora_adapter", headers=AUTH,
                        json={"lora_name": "v0005", "lora_path": str(outside)})
    assert again.status_code == 400 and "already been loaded" in again.json()["error"]["message"]

    unloaded = client.post("/v1/unload_lora_adapter", headers=AUTH, json={"lora_name": "v0005"})
    assert unloaded.status_code == 200 and "removed successfully" in unloaded.text
    assert wait_for(lambda: "v0005" not in ctx.engine.loaded_versions)
    missing = client.post("/v1/unload_lora_adapter", headers=AUTH, json={"lora_name": "v0005"})
    assert missing.status_code == 404


def test_vllm_load_validates_like_any_version(client: TestClient, ctx: AppContext, adapter_template: Path,
                                              base_info: dict[str, str], tmp_path: Path) -> None:
    bad = make_version(tmp_path / "incoming", "v0006", adapter_template, base_info)
    corrupt_truncate(bad, base_info)
    response = client.post("/v1/load_lora_adapter", headers=AUTH,
                           json={"lora_name": "v0006", "lora_path": str(bad)})
    assert response.status_code == 422 and "truncated" in response.json()["error"]["message"]
    assert "v0006" not in ctx.engine.loaded_versions
    assert not (ctx.settings.adapters_dir / "v0006").exists()


def test_unloading_the_live_version_is_refused(client: TestClient, ctx: AppContext, make) -> None:  # type: ignore[no-untyped-def]
    make("v0001")
    client.post("/admin/versions/v0001/promote", headers=AUTH)
    response = client.post("/v1/unload_lora_adapter", headers=AUTH, json={"lora_name": "v0001"})
    assert response.status_code == 409
    assert ctx.engine.live_version == "v0001" and "v0001" in ctx.engine.loaded_versions


# ---------------------------------------------------------------------------- the Models tab
def test_models_tab_handlers(ctx: AppContext, make) -> None:  # type: ignore[no-untyped-def]
    from assistant.ui import models_tab

    build_test_app(ctx)
    make("v0001")
    make("v0002", parent="v0001", gate=False)
    anonymous = {"id": "s", "user": None, "role": "anonymous"}
    admin = {"id": "s", "user": "admin", "role": "admin"}
    for call in (
        lambda s: models_tab.models_view(ctx, s),
        lambda s: models_tab.promote_action(ctx, s, "v0001", False),
        lambda s: models_tab.canary_action(ctx, s, "v0001", 0.2, False),
        lambda s: models_tab.stop_canary_action(ctx, s),
        lambda s: models_tab.rollback_action(ctx, s, "v0001"),
        lambda s: models_tab.rollback_base_action(ctx, s),
    ):
        with pytest.raises(gr.Error, match="Admins only"):
            call(anonymous)
    assert ctx.engine.live_version == BASE

    assert "is live" in models_tab.promote_action(ctx, admin, "v0001", False)
    with pytest.raises(gr.Error, match="failed the promotion gate"):
        models_tab.promote_action(ctx, admin, "v0002", False)
    assert "serves 20%" in models_tab.canary_action(ctx, admin, "v0002", 0.2, True)
    table, picker, daily, summary = models_tab.models_view(ctx, admin)
    assert list(table["version"]) == ["v0002", "v0001"]
    serving = dict(zip(table["version"], table["serving"], strict=True))
    assert serving == {"v0001": "🟢 live", "v0002": "🐤 canary 20%"}
    assert table.set_index("version").loc["v0002", "lineage"] == "v0002 ← v0001 ← base"
    assert "❌ failed" in table.set_index("version").loc["v0002", "gate"]
    assert [c[0] if isinstance(c, (list, tuple)) else c for c in picker["choices"]] == ["v0002", "v0001"]
    assert "Live: **v0001**" in summary and "monitor: **wait**" in summary
    assert list(daily.columns) == ["day", "adapter_version", "up", "down", "rate"]
    assert "base model" in models_tab.rollback_base_action(ctx, admin)
    assert ctx.engine.live_version == BASE

    with gr.Blocks():  # the wiring builds
        models_tab.build_models_tab(ctx, gr.State({}))


# ---------------------------------------------------------------------------- the CLI
def test_cli_offline_writes_the_database(ctx: AppContext, make, tiny_model_dir: Path,  # type: ignore[no-untyped-def]
                                         monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    from assistant.cli import main

    make("v0001")
    port = free_port()  # nothing listens there
    monkeypatch.setenv("ASSISTANT_MODEL_PATH", str(tiny_model_dir))
    args = ["--data-dir", str(ctx.settings.data_dir), "--port", str(port)]
    assert main(["promote", "v0001", *args]) == 0
    out = capsys.readouterr().out
    assert "v0001 is live" in out and "no server running" in out
    assert ctx.store.query("SELECT version FROM aliases WHERE name = 'live'")[0]["version"] == "v0001"
    assert main(["versions", *args]) == 0
    out = capsys.readouterr().out
    assert "live: v0001" in out and "v0001" in out and "*live" in out
    assert main(["rollback", *args]) == 0
    assert ctx.store.query("SELECT version FROM aliases WHERE name = 'live'")[0]["version"] is None
    assert main(["promote", "v0404", *args]) == 1
    assert "not registered" in capsys.readouterr().err


def test_cli_uses_the_running_server(ctx: AppContext, make, monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
                                     capsys: pytest.CaptureFixture[str]) -> None:
    import uvicorn

    from assistant.cli import main

    app = build_test_app(ctx)
    make("v0001")
    make("v0002", gate=False)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        assert wait_for(lambda: server.started, timeout=10)
        monkeypatch.setenv("ASSISTANT_ADMIN_TOKEN", TOKEN)
        args = ["--data-dir", str(ctx.settings.data_dir), "--port", str(port)]
        assert main(["promote", "v0001", *args]) == 0
        assert "applied by the running server" in capsys.readouterr().out
        assert ctx.engine.live_version == "v0001"  # took effect at once
        assert main(["promote", "v0002", *args]) == 1
        assert "HTTP 409" in capsys.readouterr().err
        assert main(["versions", "--json", *args]) == 0
        assert '"live": "v0001"' in capsys.readouterr().out
        assert main(["rollback", *args]) == 0
        assert ctx.engine.live_version == BASE
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        time.sleep(0)
