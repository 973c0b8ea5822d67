"""Hot-swapping versions under load (tiny random Llama, greedy): no errors, every request finishes on
the version that was live when it was submitted, with that version's exact output, and a retired
adapter is unloaded only after its last request."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from assistant.engine import BASE, Engine, SamplingParams
from tests.conftest import make_engine
from tests.test_batching import Gate, chat, make_adapter, sharpen

PROMPTS = ["Hi", "What is 2 + 2?", "List three colours.", "Tell me about the sea.", "Bonjour",
           "Why is the sky blue?", "Name a fruit.", "Count to five."]
VERSIONS = ["v1", "v2", "v3"]


def greedy(max_tokens: int = 20) -> SamplingParams:
    return SamplingParams(max_tokens=max_tokens, temperature=0.0)


@pytest.fixture(scope="module")
def model_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return sharpen(tiny_model_dir, tmp_path_factory.mktemp("tiny-sharp"))


@pytest.fixture(scope="module")
def adapter_paths(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("swap-adapters")
    return {v: make_adapter(model_dir, root / v, seed) for seed, v in enumerate(VERSIONS, start=10)}


@pytest.fixture(scope="module")
def references(model_dir: Path, adapter_paths: dict[str, Path]) -> dict[tuple[str, int], str]:
    """What each version answers to each prompt, run one version at a time (a batch of the prompts:
    test_batching shows a batch gives every row what it gets alone)."""
    engine = make_engine(model_dir, threads=1)
    try:
        refs = {}
        for v in [BASE, *VERSIONS]:
            if v != BASE:
                engine.load_version(v, adapter_paths[v])
            handles = [engine.submit(chat(p), greedy(), version=v) for p in PROMPTS]
            refs.update({(v, i): h.text() for i, h in enumerate(handles)})
        assert len(set(refs.values())) == len(refs)
        return refs
    finally:
        engine.stop()


def wait_until(predicate, timeout: float = 10.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.005)
    return predicate()


def test_swaps_under_load(model_dir: Path, adapter_paths: dict[str, Path],
                          references: dict[tuple[str, int], str]) -> None:
    engine = make_engine(model_dir, threads=1, max_batch_size=8)
    live_lock = threading.Lock()  # makes "live when submitted" observable
    stop = threading.Event()
    errors: list[str] = []
    results: list[tuple[str, str, int, str]] = []  # (expected version, got version, prompt, text)
    unloaded_early: list[str] = []

    def client(worker: int) -> None:
        n = 0
        while not stop.is_set():
            i = (worker + n) % len(PROMPTS)
            n += 1
            try:
                with live_lock:
                    expected = engine.live_version
                    handle = engine.submit(chat(PROMPTS[i]), greedy())
                for _ in handle.stream(timeout=30):
                    # Unloaded (read first) while the request was still running (read after): a bug.
                    loaded = engine.stats()["loaded_versions"]
                    if expected != BASE and expected not in loaded and not handle.done.is_set():
                        unloaded_early.append(expected)
                results.append((expected, handle.version, i, handle.result.text))
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=client, args=(w,)) for w in range(8)]
    try:
        for t in threads:
            t.start()
        live = BASE
        for round_ in range(9):
            done = len(results)
            assert wait_until(lambda done=done: len(results) >= done + 6, 30)  # 6+ answers per version
            new = VERSIONS[round_ % len(VERSIONS)]
            if new not in engine.stats()["loaded_versions"]:
                engine.load_version(new, adapter_paths[new])
            with live_lock:
                old = engine.set_live(new)
            assert old == live
            engine.retire(old)
            live = new
        done = len(results)
        assert wait_until(lambda: len(results) >= done + 6, 30)
        with live_lock:
            engine.set_live(BASE)
        for v in VERSIONS:
            engine.retire(v)
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    try:
        assert errors == []
        assert unloaded_early == []
        assert len(results) >= 60
        seen = {got for _, got, _, _ in results}
        assert seen == {BASE, *VERSIONS}, seen  # requests really ran on every version
        for expected, got, i, text in results:
            assert got == expected
            assert text == references[got, i], (got, i)
        # Everything retired and idle: unloaded, back to the plain base model.
        assert wait_until(lambda: engine.stats()["loaded_versions"] == [])
        assert engine.generate(chat(PROMPTS[0]), greedy()) == references[BASE, 0]
    finally:
        engine.stop()


def test_retired_version_is_unloaded_after_its_last_request(
        model_dir: Path, adapter_paths: dict[str, Path], references: dict[tuple[str, int], str]) -> None:
    engine: Engine = make_engine(model_dir, threads=1)
    try:
        engine.load_version("v1", adapter_paths["v1"])
        engine.set_live("v1")
        first = engine.submit(chat(PROMPTS[3]), greedy(400))
        last = engine.submit(chat(PROMPTS[1]), greedy(20), version="v1")
        stream = iter(first)
        assert next(stream)
        engine.load_version("v2", adapter_paths["v2"])
        engine.set_live("v2")
        engine.retire("v1")
        newer = engine.submit(chat(PROMPTS[1]), greedy())
        assert newer.version == "v2"
        assert "v1" in engine.stats()["loaded_versions"]  # two requests still run on it
        assert last.text() == references["v1", 1]
        assert first.done.is_set() or "v1" in engine.stats()["loaded_versions"]  # `first` runs on it
        first.cancel()
        list(stream)
        assert wait_until(lambda: engine.stats()["loaded_versions"] == ["v2"])
        assert newer.text() == references["v2", 1]
        # v1's slot was kept as a spare (and idle time prepared more): the next adapter of that shape
        # is copied into one, not rebuilt by PEFT.
        spares = engine.call(lambda: [name for name, _ in engine._spare]).result()
        assert "ver_v1" in spares
        engine.load_version("v3", adapter_paths["v3"])
        assert engine._peft_names["v3"] in spares
        assert engine.generate(chat(PROMPTS[1]), greedy(), version="v3") == references["v3", 1]
        with Gate(engine):
            mixed = [engine.submit(chat(PROMPTS[i]), greedy(), version=v) for i, v in enumerate(VERSIONS)
                     if v != "v1"]
        assert [h.text() for h in mixed] == [references[v, i] for i, v in enumerate(VERSIONS) if v != "v1"]
        # A retired, unloaded version can be loaded and used again.
        engine.load_version("v1", adapter_paths["v1"])
        assert engine.generate(chat(PROMPTS[1]), greedy(), version="v1") == references["v1", 1]
    finally:
        engine.stop()
