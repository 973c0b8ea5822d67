"""Bounded consumption (OWASP LLM10): no caller can make the server read, generate or queue without bound.

Against `limits_server`: chat and feedback at 6 per minute per user/IP, a queue of 1 behind a batch of 1,
max_tokens clamped to 48, at most 20 messages of at most 2,000 characters, 1 MB bodies.
"""

from __future__ import annotations

import json
import socket
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.reliability.conftest import LIMITS_ENV
from tests.server import Server

RATE = int(LIMITS_ENV["ASSISTANT_CHAT_RATE_PER_MINUTE"])
FEEDBACK_RATE = int(LIMITS_ENV["ASSISTANT_FEEDBACK_RATE_PER_MINUTE"])
MAX_TOKENS = int(LIMITS_ENV["ASSISTANT_MAX_TOKENS_LIMIT"])
MAX_MESSAGES = int(LIMITS_ENV["ASSISTANT_MAX_MESSAGES"])
MAX_CHARS = int(LIMITS_ENV["ASSISTANT_MAX_MESSAGE_CHARS"])
MAX_BODY = 1_000_000


@pytest.fixture(scope="module")
def http(limits_server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=limits_server.base_url, timeout=60) as client:
        yield client


def user() -> str:
    """A fresh user name: each test gets its own rate-limit buckets."""
    return f"u-{uuid.uuid4().hex[:10]}"


def chat(http: httpx.Client, who: str | None, text: str = "Hi", **kw: Any) -> httpx.Response:
    body = {"model": "live", "messages": [{"role": "user", "content": text}], "max_tokens": 2, **kw}
    if who is not None:
        body["user"] = who
    return http.post("/v1/chat/completions", json=body)


# ------------------------------------------------------------------------------------------- sizes
def test_body_over_the_limit_is_413_declared_or_streamed(http: httpx.Client) -> None:
    big = {"model": "live", "messages": [{"role": "user", "content": "y" * (MAX_BODY + 10)}], "user": user()}
    for path, body in (
        ("/v1/chat/completions", big),
        ("/v1/feedback", {"message_id": "m", "comment": "c" * (MAX_BODY + 10)}),
    ):
        response = http.post(path, json=body)
        assert response.status_code == 413, (path, response.text[:200])
        raw = json.dumps(body).encode()
        chunked = http.post(
            path,
            content=iter([raw[i : i + 65536] for i in range(0, len(raw), 65536)]),
            headers={"content-type": "application/json"},
        )
        assert chunked.status_code == 413, (path, chunked.text[:200])
    # A declared length far over the limit is refused before any of the body is read.
    host, port = str(http.base_url).removeprefix("http://").rstrip("/").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(
            b"POST /v1/feedback HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 99999999999\r\n\r\n{}"
        )
        head = sock.recv(4096).split(b"\r\n", 1)[0]
    assert head.startswith(b"HTTP/1.1 413"), head


def test_too_many_messages_is_400(http: httpx.Client) -> None:
    messages = [
        {"role": "user" if i % 2 == 0 else "assistant", "content": "hi"} for i in range(MAX_MESSAGES + 1)
    ]
    response = http.post("/v1/chat/completions", json={"messages": messages, "user": user()})
    assert response.status_code == 400, response.text
    assert f"at most {MAX_MESSAGES} messages" in response.json()["error"]["message"]
    response = http.post("/v1/chat/completions", json={"messages": messages * 50, "user": user()})
    assert response.status_code == 400, response.text  # over the schema's own 1,000


def test_too_long_message_is_400(http: httpx.Client) -> None:
    response = chat(http, user(), "z" * (MAX_CHARS + 1))
    assert response.status_code == 400, response.text
    assert str(MAX_CHARS) in response.json()["error"]["message"]
    parts = [{"type": "text", "text": "z" * (MAX_CHARS // 2 + 1)}] * 2  # the limit counts joined parts
    response = http.post(
        "/v1/chat/completions", json={"messages": [{"role": "user", "content": parts}], "user": user()}
    )
    assert response.status_code == 400, response.text


@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens"])
def test_max_tokens_is_clamped(http: httpx.Client, field: str) -> None:
    body = {
        "messages": [{"role": "user", "content": "Count forever."}],
        "user": user(),
        field: 10**9,
        "temperature": 1.0,
    }
    response = http.post("/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    assert 1 <= response.json()["usage"]["completion_tokens"] <= MAX_TOKENS


def test_max_tokens_is_clamped_when_streaming(http: httpx.Client, limits_server: Server) -> None:
    body = {
        "messages": [{"role": "user", "content": "Count forever."}],
        "user": user(),
        "max_tokens": 10**9,
        "stream": True,
    }
    text = ""
    with http.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("data: {"):
                chunk = json.loads(line[6:])
                text += chunk["choices"][0]["delta"].get("content") or ""
    with limits_server.db() as db:
        stored = db.execute(
            "SELECT completion_tokens, content FROM messages WHERE id = ?", [chunk["id"]]
        ).fetchone()
    assert 1 <= stored["completion_tokens"] <= MAX_TOKENS
    assert stored["content"] == text


# ------------------------------------------------------------------------------------------- rates
def assert_rate_limited(responses: list[httpx.Response], allowed: int) -> None:
    codes = [r.status_code for r in responses]
    assert codes[:allowed] == [200] * allowed, codes
    assert set(codes[allowed:]) == {429}, codes
    for limited in responses[allowed:]:
        retry_after = limited.headers.get("retry-after")
        assert retry_after is not None and retry_after.isdigit() and 1 <= int(retry_after) <= 60, retry_after
        assert limited.json()["error"]["code"] == "rate_limited"


def test_chat_rate_limit_per_user_is_429_with_retry_after(http: httpx.Client) -> None:
    who = user()
    assert_rate_limited([chat(http, who, max_tokens=1) for _ in range(RATE + 2)], RATE)
    assert chat(http, user(), max_tokens=1).status_code == 200, "another user is not held back"


def test_chat_rate_limit_per_address_without_a_user(http: httpx.Client) -> None:
    assert_rate_limited([chat(http, None, max_tokens=1) for _ in range(RATE + 2)], RATE)


def test_feedback_rate_limit_is_429_with_retry_after(http: httpx.Client) -> None:
    reply = chat(http, user(), max_tokens=1)
    assert reply.status_code == 200
    message_id, who = reply.json()["id"], user()
    responses = [
        http.post("/v1/feedback", json={"message_id": message_id, "rating": "up", "user": who})
        for _ in range(FEEDBACK_RATE + 2)
    ]
    assert_rate_limited(responses, FEEDBACK_RATE)
    compare = http.post(
        "/v1/feedback/compare", json={"message_ids": [message_id, message_id], "winner": "a", "user": who}
    )
    assert compare.status_code == 429 and compare.headers.get("retry-after")


# ------------------------------------------------------------------------------------------- queue
def test_queue_bound_is_429_and_nothing_fails(limits_server: Server) -> None:
    """A queue of 1 behind a batch of 1: a flood of long chats gets 429 (queue_full) for the overflow,
    200 for the rest, never a 5xx; the server answers normally afterwards."""
    codes: list[int] = []
    bodies: list[dict[str, Any]] = []
    retry_after: list[str | None] = []
    lock = threading.Lock()

    def flood(round_: int, n: int) -> None:
        barrier = threading.Barrier(n)

        def one(i: int) -> None:
            with httpx.Client(base_url=limits_server.base_url, timeout=120) as http:
                barrier.wait(30)
                response = chat(
                    http, f"flood-{round_}-{i}", "Write a long story.", max_tokens=MAX_TOKENS, temperature=1.0
                )
            with lock:
                codes.append(response.status_code)
                bodies.append(response.json())
                if response.status_code == 429:
                    retry_after.append(response.headers.get("retry-after"))

        threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(180)

    for round_ in range(5):  # a round can race past the queue on a fast machine; a few rounds won't
        flood(round_, 12)
        if 429 in codes:
            break
    assert 429 in codes, codes
    assert set(codes) <= {200, 429}, codes
    assert {b["error"]["code"] for b in bodies if "error" in b} == {"queue_full"}
    assert retry_after and all(v is not None and 1 <= int(v) <= 30 for v in retry_after), retry_after
    with httpx.Client(base_url=limits_server.base_url, timeout=60) as http:
        assert chat(http, user()).status_code == 200


# ------------------------------------------------------------------------------------------- Gradio
def test_gradio_routes_have_a_body_limit_too(http: httpx.Client) -> None:
    """Anonymous POSTs to Gradio's own routes are bounded: a huge queue/join and a big upload are 413."""
    join = {
        "data": ["x" * (4 * MAX_BODY + 10)],
        "fn_index": 0,
        "session_hash": "abcdefghijk",
        "trigger_id": None,
    }
    response = http.post("/gradio_api/queue/join", json=join)
    assert response.status_code == 413, response.text[:200]
    upload = http.post(
        "/gradio_api/upload", files={"files": ("big.bin", b"\0" * (2 * MAX_BODY), "application/octet-stream")}
    )
    assert upload.status_code == 413, (upload.status_code, upload.text[:200])
    small = http.post("/gradio_api/upload", files={"files": ("small.txt", b"hello", "text/plain")})
    assert small.status_code == 200, small.text[:200]
