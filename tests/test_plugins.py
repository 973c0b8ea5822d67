"""Plugins: the built-ins are plugins; the example plugin adds a preset and a curation filter, registered
directly, found through an entry point, and installed with pip; broken plugins are reported, not fatal."""

from __future__ import annotations

import importlib
import json
import logging
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest

from assistant import plugins
from assistant.hookspecs import hookimpl
from assistant.presets import TONES, Presets, compose_system_prompt
from feedback.filters import make_item

REPO = Path(__file__).resolve().parent.parent
EXAMPLE_DIR = REPO / "examples" / "assistant-plugin-example"


@pytest.fixture(autouse=True)
def clean_plugins() -> Iterator[None]:
    """Whatever a test registers (or fails to load) is gone afterwards."""
    before = {id(p) for p in plugins.pm.get_plugins()}
    failed, errors, sources = dict(plugins._failed), dict(plugins._hook_errors), dict(plugins._sources)
    yield
    for plugin in list(plugins.pm.get_plugins()):
        if id(plugin) not in before:
            plugins.pm.unregister(plugin)
    saved_state = ((failed, plugins._failed), (errors, plugins._hook_errors), (sources, plugins._sources))
    for saved, live in saved_state:
        live.clear()
        live.update(saved)  # type: ignore[arg-type]


@pytest.fixture
def example(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(EXAMPLE_DIR))
    monkeypatch.delenv("ASSISTANT_BANNED_WORDS", raising=False)
    return importlib.import_module("assistant_plugin_example")


def sft_item(question: str, answer: str) -> dict[str, Any]:
    messages = [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    return make_item("sft", {"messages": messages}, {"source_ids": [question]})


# ---------------------------------------------------------------------------- built-ins
def test_builtins_are_a_plugin() -> None:
    from training.regression_checks import CHECKS

    listed = {p["name"]: p for p in plugins.list_plugins()}
    builtin = listed["builtin"]
    assert builtin["builtin"] and builtin["error"] is None
    hooks = set(builtin["hooks"])
    assert {"register_presets", "register_model_backends", "register_gate_evaluators"} <= hooks
    presets = plugins.get_presets()
    assert presets["tone"]["friendly"] == "Use a warm, friendly and encouraging tone."
    assert {"free", "bullet list", "numbered steps", "JSON"} <= set(presets["format"])
    assert set(plugins.get_backends()) >= {"transformers", "remote"}
    assert plugins.get_gate_checks() == CHECKS
    assert plugins.get_curation_filters() == []


def test_backend_choice_follows_settings() -> None:
    from assistant.settings import Settings

    assert plugins.backend_name(Settings()) == "transformers"
    assert plugins.backend_name(Settings(backend_url="http://gpu:8000")) == "remote"
    assert plugins.backend_name(Settings(backend="custom", backend_url="http://x")) == "custom"
    with pytest.raises(plugins.PluginError, match=r"no model backend named 'nope'.*transformers"):
        plugins.build_engine(Settings(backend="nope"), None, "m")


def test_every_hook_is_documented() -> None:
    from assistant import hookspecs

    names = plugins.hook_names()
    assert names == sorted([
        "feedback_recorded", "register_curation_filters", "register_gate_evaluators",
        "register_model_backends", "register_presets", "register_routes",
    ])
    docs = (REPO / "docs" / "plugins.md").read_text()
    for name in names:
        assert getattr(hookspecs, name).__doc__, name
        assert f"## {name}" in docs, f"docs/plugins.md has no section for {name}"


# ---------------------------------------------------------------------------- the example plugin
def test_example_preset_composes_the_system_prompt(example: ModuleType) -> None:
    assert "pirate" not in TONES
    plugins.register(example)
    assert TONES["pirate"] == example.PIRATE
    assert "pirate" in list(TONES)  # what the UI's Tone menu offers
    presets = Presets(tone="pirate", format="bullet list")
    prompt = compose_system_prompt("Answer geography questions.", presets)
    assert prompt.startswith("Answer geography questions. Talk like a pirate")
    assert "bullet list" in prompt
    plugins.pm.unregister(example)
    with pytest.raises(ValueError, match="unknown tone 'pirate'"):
        Presets(tone="pirate")


def test_example_filter_drops_banned_words(example: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    from feedback.curate import CurationConfig

    plugins.register(example)
    (banned,) = plugins.get_curation_filters()
    assert banned.name == "banned-words"
    clean = sft_item("What is the capital of France?", "Paris.")
    bad = sft_item("Tell me about the Frobnicator.", "It frobnicates.")
    kept, dropped = banned([clean, bad])
    assert kept == [clean]
    assert dropped == [{"item": bad, "filter": "banned-words", "reason": "mentions 'Frobnicator'"}]
    # The curation pipeline accepts it as an extra filter (feedback.filters.Filter protocol).
    config = CurationConfig(extra_filters=plugins.get_curation_filters())
    assert config.extra_filters[0].name == "banned-words"
    monkeypatch.setenv("ASSISTANT_BANNED_WORDS", "paris")
    (banned,) = plugins.get_curation_filters()
    kept, dropped = banned([clean, bad])
    assert kept == [bad] and dropped[0]["item"] == clean


def write_fake_distribution(site: Path, entry_points: dict[str, str], name: str = "assistant-plugin-example",
                            version: str = "0.1.0") -> None:
    """A *.dist-info directory is all importlib.metadata needs to find an entry point on sys.path."""
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    lines = "".join(f"{key} = {value}\n" for key, value in entry_points.items())
    (info / "entry_points.txt").write_text(f"[assistant]\n{lines}")


def test_entry_point_discovery(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                               caplog: pytest.LogCaptureFixture) -> None:
    site = tmp_path / "site"
    write_fake_distribution(site, {"example": "assistant_plugin_example"})
    write_fake_distribution(site, {"broken": "no_such_module_for_assistant"}, name="broken-plugin")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.syspath_prepend(str(EXAMPLE_DIR))
    with caplog.at_level(logging.ERROR, logger="assistant.plugins"):
        loaded = plugins.load_entrypoints(only={"example", "broken"})
    assert loaded == ["example"]
    assert "plugin 'broken'" in caplog.text and "no_such_module_for_assistant" in caplog.text
    listed = {p["name"]: p for p in plugins.list_plugins()}
    assert listed["example"]["hooks"] == ["register_curation_filters", "register_presets"]
    assert listed["example"]["error"] is None
    assert listed["example"]["package"] == "assistant-plugin-example"
    assert listed["example"]["version"] == "0.1.0"
    assert listed["broken"]["hooks"] == [] and "ModuleNotFoundError" in listed["broken"]["error"]
    assert "pirate" in plugins.get_presets()["tone"]


def test_cli_lists_plugins_and_failures(tmp_path: Path) -> None:
    site = tmp_path / "site"
    write_fake_distribution(site, {"example": "assistant_plugin_example"})
    write_fake_distribution(site, {"broken": "no_such_module_for_assistant"}, name="broken-plugin")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASSISTANT_")}
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(EXAMPLE_DIR), str(REPO)])
    proc = subprocess.run([sys.executable, "-m", "assistant", "plugins"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1, proc.stderr  # a failed plugin is reported, with a non-zero exit
    listed = {p["name"]: p for p in json.loads(proc.stdout)}
    assert listed["builtin"]["error"] is None
    assert listed["example"]["hooks"] == ["register_curation_filters", "register_presets"]
    assert "no_such_module_for_assistant" in listed["broken"]["error"]
    assert "broken" in proc.stderr  # logged with its name too

    env["ASSISTANT_LOAD_PLUGINS"] = "example"  # only the plugins named here load
    proc = subprocess.run([sys.executable, "-m", "assistant", "plugins"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert [p["name"] for p in json.loads(proc.stdout)] == ["builtin", "example"]


def test_pip_installed_example_is_discovered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source, target = tmp_path / "source", tmp_path / "target"
    # Build from a copy: setuptools writes build/ and *.egg-info next to the sources it builds.
    shutil.copytree(EXAMPLE_DIR, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--no-index", "--disable-pip-version-check", "--target", str(target), str(source)],
        capture_output=True, text=True, timeout=120,
    )
    if proc.returncode != 0:
        pytest.skip(f"pip could not build the example offline: {proc.stderr[-500:]}")
    monkeypatch.syspath_prepend(str(target))
    sys.modules.pop("assistant_plugin_example", None)
    try:
        assert plugins.load_entrypoints(only={"example"}) == ["example"]
        module = plugins.pm.get_plugin("example")
        assert Path(module.__file__).is_relative_to(target)
        assert Presets(tone="pirate").tone == "pirate"
    finally:
        sys.modules.pop("assistant_plugin_example", None)


# ---------------------------------------------------------------------------- broken plugins
def test_unknown_hook_name_is_refused() -> None:
    class Typo:
        @hookimpl
        def register_preset(self, register: Any) -> None:  # missing "s"
            register("tone", "x", "y")

    with pytest.raises(plugins.PluginError, match="register_preset, which is not an assistant hook"):
        plugins.register(Typo(), name="typo")
    assert plugins.pm.get_plugin("typo") is None


def test_a_raising_hook_is_reported_not_fatal(caplog: pytest.LogCaptureFixture) -> None:
    class Raises:
        @hookimpl
        def register_presets(self, register: Any) -> None:
            register("tone", "calm", "Stay calm.")
            raise RuntimeError("boom")

    class BadKind:
        @hookimpl
        def register_presets(self, register: Any) -> None:
            register("colour", "blue", "Be blue.")

    plugins.register(Raises(), name="raises")
    plugins.register(BadKind(), name="bad-kind")
    with caplog.at_level(logging.ERROR, logger="assistant.plugins"):
        presets = plugins.get_presets()
        plugins.get_presets()
    assert presets["tone"]["friendly"] and presets["tone"]["calm"] == "Stay calm."
    assert caplog.text.count("plugin 'raises' failed in register_presets") == 1  # once, not per call
    listed = {p["name"]: p for p in plugins.list_plugins()}
    assert listed["raises"]["error"] == "register_presets: RuntimeError: boom"
    assert "preset kind must be one of tone, format, safety" in listed["bad-kind"]["error"]
    assert Presets(tone="calm").tone == "calm"


# ---------------------------------------------------------------------------- other hooks
def test_gate_evaluator_hook() -> None:
    class Polite:
        @hookimpl
        def register_gate_evaluators(self, register: Any) -> None:
            register("polite", lambda answer, check: "please" in answer.lower())

    plugins.register(Polite(), name="polite")
    checks = plugins.get_gate_checks()
    assert checks["polite"]("Please sit.", {"kind": "polite"}) is True
    assert checks["polite"]("Sit.", {"kind": "polite"}) is False
    assert "bullets" in checks  # the shipped kinds are still there


def test_feedback_listeners_never_break_the_request(caplog: pytest.LogCaptureFixture) -> None:
    received: list[dict[str, Any]] = []
    delivered = threading.Event()

    class Broken:
        @hookimpl
        def feedback_recorded(self, rating: dict[str, Any]) -> None:
            raise ConnectionError("the other system is down")

    class Forwarder:
        @hookimpl
        def feedback_recorded(self, rating: dict[str, Any]) -> None:
            received.append(rating)
            delivered.set()

    class FakeStore:
        def add_rating(self, *, message_id: str, rater: str, rating: str | None = None,
                       tags: tuple[str, ...] = ()) -> int:
            return 7

    plugins.register(Broken(), name="broken-listener")
    plugins.register(Forwarder(), name="forwarder")
    ctx = SimpleNamespace(extras={}, store=FakeStore())
    with caplog.at_level(logging.ERROR, logger="assistant.plugins"):
        plugins.attach_plugins(ctx)
        assert ctx.store.add_rating(message_id="msg_1", rater="ann", rating="up", tags=("helpful",)) == 7
        assert delivered.wait(5)
    assert received == [{"id": 7, "message_id": "msg_1", "rater": "ann", "rating": "up", "tags": ["helpful"]}]
    assert "plugin 'broken-listener' failed in feedback_recorded" in caplog.text
    plugins.attach_plugins(ctx)  # attaching twice does not notify twice
    ctx.store.add_rating(message_id="msg_2", rater="ann", rating="down")
    plugins._events.submit(lambda: None).result(5)  # type: ignore[union-attr]
    assert [r["message_id"] for r in received] == ["msg_1", "msg_2"]


def test_plugin_routes_are_mounted() -> None:
    from fastapi import APIRouter, FastAPI
    from fastapi.testclient import TestClient

    class Routes:
        @hookimpl
        def register_routes(self, app_ctx: Any) -> list[Any]:
            router = APIRouter()

            @router.get("/plugin/hello")
            def hello() -> dict[str, str]:
                return {"model": app_ctx.model_id}

            return [router, "not a router"]

    plugins.register(Routes(), name="routes")
    ctx = SimpleNamespace(extras={}, store=None, model_id="tiny")
    plugins.attach_plugins(ctx)
    app = FastAPI()
    for router in ctx.extras["routers"]:
        app.include_router(router)
    assert TestClient(app).get("/plugin/hello").json() == {"model": "tiny"}
    listed = {p["name"]: p for p in ctx.extras["plugins"]}
    assert "not an APIRouter" in listed["routes"]["error"]
