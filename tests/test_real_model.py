"""The real bundled SmolLM2-135M-Instruct, end to end: through the HTTP API of a server subprocess and
through `python -m assistant chat`. Slow: seconds per answer on 2 cores."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import openai
import pytest

from tests.server import REPO, Server, link_model_cache, server_env

QUESTION = "What is the capital of France?"
pytestmark = pytest.mark.slow


def test_real_model_answers_paris_over_http(real_server: Server, record_property) -> None:  # type: ignore[no-untyped-def]
    client = openai.OpenAI(base_url=f"{real_server.base_url}/v1", api_key="x", max_retries=0, timeout=120)
    reply = client.chat.completions.create(
        model="live", messages=[{"role": "user", "content": QUESTION}], temperature=0, max_tokens=48
    )
    assert "Paris" in reply.choices[0].message.content
    assert reply.model == "SmolLM2-135M-Instruct"

    # The same question streamed: the same greedy answer.
    streamed = "".join(
        chunk.choices[0].delta.content or ""
        for chunk in client.chat.completions.create(
            model="live",
            messages=[{"role": "user", "content": QUESTION}],
            temperature=0,
            max_tokens=48,
            stream=True,
        )
    )
    assert streamed == reply.choices[0].message.content


def test_real_model_streaming_speed(real_server: Server, record_property) -> None:  # type: ignore[no-untyped-def]
    """One longer streamed answer: tokens/s from the first to the last token (reported, loosely bounded)."""
    client = openai.OpenAI(base_url=f"{real_server.base_url}/v1", api_key="x", max_retries=0, timeout=300)
    started = time.monotonic()
    first = None
    text, message_id = "", None
    for chunk in client.chat.completions.create(
        model="live",
        messages=[{"role": "user", "content": "Describe Paris in a short paragraph."}],
        temperature=0,
        max_tokens=96,
        stream=True,
    ):
        message_id = chunk.id
        delta = chunk.choices[0].delta.content or ""
        if delta and first is None:
            first = time.monotonic()
        text += delta
    ended = time.monotonic()
    with real_server.db() as db:
        row = db.execute(
            "SELECT completion_tokens, model_id, content FROM messages WHERE id = ?", [message_id]
        ).fetchone()
    assert row["model_id"] == "SmolLM2-135M-Instruct" and row["content"] == text
    tokens = row["completion_tokens"]
    assert first is not None and tokens >= 20
    rate = (tokens - 1) / max(1e-6, ended - first)
    record_property("ready_s", round(real_server.ready_s, 1))
    record_property("tokens_per_s", round(rate, 1))
    print(
        f"\nreal model: server ready in {real_server.ready_s:.1f} s; {tokens} tokens streamed at "
        f"{rate:.1f} tokens/s after a first token at {first - started:.2f} s"
    )
    assert rate > 1.0, "far below the ~30 tokens/s this model decodes at on 2 idle cores"


def test_cli_chat_prints_paris(real_model_dir: Path, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    link_model_cache(data_dir, real_model_dir.parent)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "assistant",
            "chat",
            QUESTION,
            "--data-dir",
            str(data_dir),
            "--max-tokens",
            "48",
        ],
        cwd=REPO,
        env=server_env("unused", "unused-password"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Paris" in done.stdout
