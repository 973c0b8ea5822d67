"""Scale-out: one instance of this project generates ("back"), a second serves users with its engine set to
the first through the remote backend ("front", ASSISTANT_BACKEND_URL). The back stands in for vLLM: it
speaks the same OpenAI chat API and the same /v1/load_lora_adapter and /v1/unload_lora_adapter routes.

Chat and ratings go through the front with the official openai client; versions are loaded, promoted and
rolled back through the front's own admin API, and directly with RemoteEngine against the back.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from assistant.engine import BASE, SamplingParams
from assistant.errors import InvalidRequestError
from assistant.model import base_model_info
from assistant.remote import RemoteBackendError, RemoteEngine
from tests.conftest import TINY_SERVER_ENV
from tests.server import Server, start_server, stop_server
from tests.test_registry import build_template, make_version

TOKEN = secrets.token_urlsafe(24)
QUESTION = [{"role": "user", "content": "Say hello."}]


def wait_until(condition: Callable[[], bool], timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


@pytest.fixture(scope="module")
def servers(tiny_model_dir: Path,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Server]]:
    """(back, front), started together: the front retries the back until it answers."""
    root = tmp_path_factory.mktemp("scale-out")
    from tests.helpers import free_port

    back_port = free_port()
    back_url = f"http://127.0.0.1:{back_port}"
    front_env = {**TINY_SERVER_ENV, "ASSISTANT_BACKEND_URL": back_url, "ASSISTANT_BACKEND_API_KEY": TOKEN}
    with ThreadPoolExecutor(2) as pool:
        back_future = pool.submit(start_server, root / "back", model_path=tiny_model_dir, env=TINY_SERVER_ENV,
                                  port=back_port, admin_token=TOKEN)
        front_future = pool.submit(start_server, root / "front", model_path=tiny_model_dir, env=front_env,
                                   admin_token=TOKEN)
        started = []
        try:
            for future in (back_future, front_future):
                started.append(future.result())
        except BaseException:
            for server in started:
                stop_server(server)
            raise
    back, front = started
    try:
        yield back, front
    finally:
        stop_server(front)
        stop_server(back)


@pytest.fixture(scope="module")
def back(servers: tuple[Server, Server]) -> Server:
    return servers[0]


@pytest.fixture(scope="module")
def front(servers: tuple[Server, Server]) -> Server:
    return servers[1]


@pytest.fixture(scope="module")
def make_adapter(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """make_adapter("r0001") → a version directory (real PEFT LoRA on the tiny model + manifest)."""
    root = tmp_path_factory.mktemp("remote-adapters")
    template = build_template(tiny_model_dir, root / "template")
    base = base_model_info(tiny_model_dir)
    return lambda version: make_version(root / "versions", version, template, base)


def models(server: Server) -> set[str]:
    return {m["id"] for m in httpx.get(f"{server.base_url}/v1/models", timeout=10).json()["data"]}


def stored(server: Server, message_id: str | None = None, content: str | None = None) -> list[dict[str, Any]]:
    with server.db() as db:
        if message_id is not None:
            rows = db.execute("SELECT * FROM messages WHERE id = ?", [message_id]).fetchall()
        else:
            rows = db.execute("SELECT * FROM messages WHERE role = 'assistant' AND content = ?",
                              [content]).fetchall()
    return [dict(row) for row in rows]


# ---------------------------------------------------------------------------- through the front
def test_chat_and_rating_through_the_front(front: Server, back: Server) -> None:
    health = httpx.get(f"{front.base_url}/health", timeout=10).json()
    assert health["status"] == "ready" and health["engine"]["backend"] == back.base_url

    with openai.OpenAI(base_url=f"{front.base_url}/v1", api_key="x", max_retries=0, timeout=60) as client:
        reply = client.chat.completions.create(model="live", messages=QUESTION, max_tokens=8, temperature=0,
                                               user="remote-tester")
        text = reply.choices[0].message.content
        assert reply.id.startswith("msg_") and text
        assert reply.usage is not None and reply.usage.prompt_tokens > 5
        assert 1 <= reply.usage.completion_tokens <= 8
        chunks = list(client.chat.completions.create(model="live", messages=QUESTION, max_tokens=8,
                                                     temperature=0, stream=True, user="remote-tester"))
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == text  # greedy: the same answer
    assert len({c.id for c in chunks}) == 1

    # The front stores the conversation it served; the back generated it (and, being this project, logged it).
    (row,) = stored(front, reply.id)
    assert row["content"] == text and row["adapter_version"] is None and row["created_by"] == "remote-tester"
    assert stored(back, content=text)

    rating = httpx.post(f"{front.base_url}/v1/feedback", timeout=10,
                        json={"message_id": reply.id, "rating": "up", "tags": [], "user": "remote-tester"})
    assert rating.status_code == 200, rating.text
    with front.db() as db:
        saved = db.execute("SELECT rating, rater FROM ratings WHERE message_id = ?", [reply.id]).fetchall()
    assert [tuple(r) for r in saved] == [("up", "remote-tester")]


def test_promote_and_rollback_through_the_front(front: Server, back: Server,
                                                make_adapter: Callable[[str], Path]) -> None:
    admin = {"Authorization": f"Bearer {TOKEN}"}
    path = make_adapter("f0001")
    # The front's vLLM-compatible admin route: validate + register here, then load on the back.
    loaded = httpx.post(f"{front.base_url}/v1/load_lora_adapter", headers=admin, timeout=60,
                        json={"lora_name": "f0001", "lora_path": str(path)})
    assert loaded.status_code == 200, loaded.text
    assert "f0001" in models(front) and "f0001" in models(back)

    promoted = httpx.post(f"{front.base_url}/admin/versions/f0001/promote", headers=admin, timeout=60,
                          json={"force": True})  # no gate report in this test
    assert promoted.status_code == 200, promoted.text
    assert promoted.json()["live"] == "f0001"
    with openai.OpenAI(base_url=f"{front.base_url}/v1", api_key="x", max_retries=0, timeout=60) as client:
        on_version = client.chat.completions.create(model="live", messages=QUESTION, max_tokens=6,
                                                    temperature=0)
        assert on_version.model == "f0001"
        (row,) = stored(front, on_version.id)
        assert row["adapter_version"] == "f0001"
        assert any(r["adapter_version"] == "f0001"
                   for r in stored(back, content=on_version.choices[0].message.content))

        rolled = httpx.post(f"{front.base_url}/admin/rollback", headers=admin, timeout=60, json={})
        assert rolled.status_code == 200, rolled.text
        assert rolled.json()["live"] is None
        # The old version is unloaded on the back once nothing uses it.
        assert wait_until(lambda: "f0001" not in models(back)), models(back)
        assert "f0001" not in models(front)
        on_base = client.chat.completions.create(model="live", messages=QUESTION, max_tokens=6, temperature=0)
        assert on_base.model != "f0001" and stored(front, on_base.id)[0]["adapter_version"] is None


# ---------------------------------------------------------------------------- RemoteEngine, directly
@pytest.fixture
def engine(back: Server) -> Iterator[RemoteEngine]:
    remote = RemoteEngine(back.base_url + "/v1", api_key=TOKEN, model_id="tiny", max_concurrency=4).start()
    yield remote
    remote.stop()


def test_remote_engine_versions(engine: RemoteEngine, back: Server,
                                make_adapter: Callable[[str], Path]) -> None:
    assert engine.running and engine.backend_model  # learnt from the back's /v1/models
    assert engine.live_version == BASE and "r0001" not in engine.loaded_versions
    engine.load_version("r0001", make_adapter("r0001"))
    assert "r0001" in engine.loaded_versions and "r0001" in models(back)

    assert engine.set_live("r0001") == BASE
    handle = engine.submit(QUESTION, SamplingParams(max_tokens=5, temperature=0))
    text = handle.text(timeout=60)
    assert handle.version == "r0001" and handle.result.finish_reason in ("stop", "length")
    assert 1 <= handle.result.completion_tokens <= 5
    assert any(r["adapter_version"] == "r0001" for r in stored(back, content=text))
    with openai.OpenAI(base_url=f"{back.base_url}/v1", api_key="x", max_retries=0, timeout=60) as client:
        direct = client.chat.completions.create(model="r0001", messages=QUESTION, max_tokens=5, temperature=0)
    assert direct.model == "r0001" and direct.choices[0].message.content == text

    # Retire while a request pinned to r0001 streams: it stays loaded until that request ends.
    long = engine.submit(QUESTION, SamplingParams(max_tokens=1000, temperature=1.0))
    next(iter(long))
    assert engine.set_live(BASE) == "r0001"
    engine.retire("r0001")
    assert "r0001" in engine.loaded_versions and "r0001" in models(back)
    long.cancel()
    assert long.done.wait(30) and long.result.finish_reason == "cancelled"
    assert wait_until(lambda: "r0001" not in engine.loaded_versions)
    assert wait_until(lambda: "r0001" not in models(back))
    with pytest.raises(InvalidRequestError, match="not loaded"):
        engine.submit(QUESTION, version="r0001")
    assert engine.submit(QUESTION, SamplingParams(max_tokens=3)).text(timeout=60) is not None


def test_a_version_the_backend_lost_is_loaded_again(engine: RemoteEngine, back: Server,
                                                    make_adapter: Callable[[str], Path]) -> None:
    engine.load_version("r0003", make_adapter("r0003"))
    # The backend forgets it (as a restarted vLLM forgets runtime-loaded adapters).
    dropped = httpx.post(f"{back.base_url}/v1/unload_lora_adapter", json={"lora_name": "r0003"}, timeout=30,
                         headers={"Authorization": f"Bearer {TOKEN}"})
    assert dropped.status_code == 200, dropped.text
    assert wait_until(lambda: "r0003" not in models(back))
    handle = engine.submit(QUESTION, SamplingParams(max_tokens=4, temperature=0), version="r0003")
    assert handle.text(timeout=60) and handle.result.finish_reason in ("stop", "length")
    assert "r0003" in models(back)
    engine.retire("r0003")
    assert wait_until(lambda: "r0003" not in models(back))


def test_remote_engine_reports_backend_problems(engine: RemoteEngine, back: Server) -> None:
    # A bad adapter is refused by the back's validation, and the message says why.
    with pytest.raises(Exception, match=r"refused adapter r-missing.*not a directory"):
        engine.load_version("r-missing", Path("/nonexistent/r-missing"))
    assert "r-missing" not in engine.loaded_versions
    # A wrong key: chats may be public, but loading an adapter is refused, and the error says which key.
    bad = RemoteEngine(back.base_url, api_key="wrong", model_id="tiny").start()
    try:
        with pytest.raises(RemoteBackendError, match=r"refused to load r0002.*ASSISTANT_BACKEND_API_KEY"):
            bad.load_version("r0002", Path("/nonexistent"))
    finally:
        bad.stop()
    # Nothing listening: a clear error naming the URL, after the startup retries.
    from tests.helpers import free_port

    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(RemoteBackendError, match=f"cannot reach the model backend at {url}"):
        RemoteEngine(url, model_id="tiny", startup_timeout_s=0.5).start()
