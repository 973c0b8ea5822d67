"""Fixtures: the tiny random Llama (fast tests), the real bundled model (slow tests), engines."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from tests.helpers import build_tiny_model

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


# A real server subprocess with the tiny model, shared by the API and UI tests. Rate limits are raised:
# the tests send hundreds of chats and thousands of ratings from one address (127.0.0.1).
TINY_SERVER_ENV = {
    "ASSISTANT_FEEDBACK_RATE_PER_MINUTE": "1000000",
    "ASSISTANT_CHAT_RATE_PER_MINUTE": "100000",
    "ASSISTANT_THREADS": "1",
    "ASSISTANT_DEFAULT_MAX_TOKENS": "32",  # the UI's default answer length: the tiny model rambles
}


@pytest.fixture(scope="session")
def tiny_server(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    from tests.server import running_server

    data_dir = tmp_path_factory.mktemp("tiny-server") / "data"
    with running_server(data_dir, model_path=tiny_model_dir, env=TINY_SERVER_ENV) as server:
        yield server


@pytest.fixture(scope="session")
def members_only_server(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """The tiny server with anonymous use off (ASSISTANT_ALLOW_ANONYMOUS=false): API keys and sign-in only."""
    from tests.server import running_server

    data_dir = tmp_path_factory.mktemp("members-only-server") / "data"
    env = {**TINY_SERVER_ENV, "ASSISTANT_ALLOW_ANONYMOUS": "false"}
    with running_server(data_dir, model_path=tiny_model_dir, env=env) as server:
        yield server


@pytest.fixture(scope="session")
def real_server(real_model_dir: Path, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """The real bundled model behind a server; its data dir reuses the converted model cache (a symlink)."""
    from tests.server import link_model_cache, running_server

    data_dir = tmp_path_factory.mktemp("real-server") / "data"
    link_model_cache(data_dir, real_model_dir.parent)
    # One torch thread: on a shared 2-core machine, 2 threads slow to a crawl once anything else runs.
    env = {"ASSISTANT_CHAT_RATE_PER_MINUTE": "100000", "ASSISTANT_THREADS": "1"}
    with running_server(data_dir, model_path=None, env=env) as server:
        yield server
