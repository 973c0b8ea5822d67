"""Fixtures: the tiny random Llama (fast tests), the real bundled model (slow tests), engines."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from tests.helpers import build_tiny_model  # noqa: E402

SHARED = Path(os.environ.get("ASSISTANT_TEST_CACHE", Path(__file__).parent.parent / ".test-cache"))


@pytest.fixture(scope="session")
def tiny_model_dir() -> Path:
    return build_tiny_model(SHARED / "tiny-llama")


@pytest.fixture(scope="session")
def real_model_dir() -> Path:
    from assistant.model import ensure_cache, resolve_source

    return ensure_cache(resolve_source(None), SHARED / "model-cache")


def make_engine(model_dir: Path, **kw):  # type: ignore[no-untyped-def]
    from assistant.engine import Engine
    from assistant.model import load_model, load_tokenizer

    return Engine(load_model(model_dir), load_tokenizer(model_dir), model_id=model_dir.name, **kw).start()


@pytest.fixture
def tiny_engine(tiny_model_dir: Path):  # type: ignore[no-untyped-def]
    engine = make_engine(tiny_model_dir, threads=1)
    yield engine
    engine.stop()
