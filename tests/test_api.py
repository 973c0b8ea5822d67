"""The HTTP API of a real server subprocess (tiny model), through the official `openai` client and httpx;
what it stores is checked in the SQLite file itself, opened read-only."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.server import REPO, Server

USER = "tester-api"


@pytest.fixture(scope="module")
def client(tiny_server: Server) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{tiny_server.base_url}/v1", api_key="x", max_retries=0, timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def http(tiny_server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=tiny_server.base_url, timeout=60) as c:
        yield c


def ask(client: openai.OpenAI, text: str = "Say hello.", **kw: Any) -> Any:
    kw.setdefault("max_tokens", 6)
    kw.setdefault("user", USER)
    return client.chat.completions.create(model="live", messages=[{"role": "user", "content": text}], **kw)


def message_row(server: Server, message_id: str) -> dict[str, Any] | None:
    with server.db() as db:
        row = db.execute("SELECT * FROM messages WHERE id = ?", [message_id]).fetchone()
    return dict(row) if row else None


# ------------------------------------------------------------------------------------------- chat
def test_completion_is_stored_with_usage(client: openai.OpenAI, tiny_server: Server) -> None:
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a colour."}]
    reply = client.chat.completions.create(
        model="live", messages=messages, max_tokens=7, temperature=0, user=USER
    )
    assert reply.id.startswith("msg_")
    assert reply.object == "chat.completion"
    assert reply.choices[0].message.role == "assistant"
    assert reply.choices[0].finish_reason in ("stop", "length")
    usage = reply.usage
    assert usage is not None and usage.prompt_tokens > 5
    assert 1 <= usage.completion_tokens <= 7
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    row = message_row(tiny_server, reply.id)
    assert row is not None, "the answer is stored by the time the response arrives"
    assert row["role"] == "assistant" and row["source"] == "api"
    assert row["content"] == reply.choices[0].message.content
    assert row["created_by"] == USER
    assert (row["prompt_tokens"], row["completion_tokens"]) == (usage.prompt_tokens, usage.completion_tokens)
    assert json.loads(row["prompt_json"]) == messages
    assert json.loads(row["sampling_json"])["max_tokens"] == 7


def test_stream_chunks_share_the_stored_message_id(client: openai.OpenAI, tiny_server: Server) -> None:
    stream = ask(client, "Count to three.", max_tokens=12, stream=True)
    ids, text, finish = set(), "", []
    for chunk in stream:
        ids.add(chunk.id)
        assert chunk.object == "chat.completion.chunk"
        choice = chunk.choices[0]
        text += choice.delta.content or ""
        if choice.finish_reason:
            finish.append(choice.finish_reason)
    assert len(ids) == 1
    (message_id,) = ids
    assert message_id.startswith("msg_")
    assert finish == ["length"] or finish == ["stop"], "exactly one final chunk, with the finish reason"
    # Stored before the stream ended: a rating sent right after it finds the message.
    row = message_row(tiny_server, message_id)
    assert row is not None and row["content"] == text
    assert row["completion_tokens"] <= 12


def test_models_list_contains_live(client: openai.OpenAI) -> None:
    ids = [m.id for m in client.models.list()]
    assert "live" in ids
    assert "tiny-llama" in ids


def test_n_above_one_is_a_bad_request(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        ask(client, n=2)
    assert "n > 1" in info.value.message


def test_input_over_the_limits_is_a_bad_request_and_the_server_goes_on(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        ask(client, "hello " * 2100)  # ~2100 tokens: over the 2048-token context window
    assert "context window 2048" in info.value.message
    assert info.value.code == "context_length_exceeded"
    with pytest.raises(openai.BadRequestError) as info:
        ask(client, "x" * 33_000)  # over max_message_chars
    assert "32000" in info.value.message
    reply = ask(client, "Still there?")
    assert reply.choices[0].message.content is not None and reply.usage.completion_tokens >= 1


def test_oversized_body_is_413(http: httpx.Client) -> None:
    body = {"model": "live", "messages": [{"role": "user", "content": "y" * 1_100_000}]}
    response = http.post("/v1/chat/completions", json=body)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "body_too_large"

    # Without a Content-Length (chunked upload) the limit holds too.
    raw = json.dumps(body).encode()

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(raw), 65536):
            yield raw[i : i + 65536]

    response = http.post(
        "/v1/chat/completions", content=chunks(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert http.get("/health").json()["status"] == "ready"


def test_unknown_model_is_404(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(
            model="no-such-model", messages=[{"role": "user", "content": "hi"}], max_tokens=2
        )
    assert "no-such-model" in info.value.message


# ------------------------------------------------------------------------------------------- feedback
def test_feedback_is_stored_with_message_rater_version_and_prompt(
    client: openai.OpenAI, http: httpx.Client, tiny_server: Server
) -> None:
    messages = [
        {"role": "system", "content": "You answer in one word."},
        {"role": "user", "content": "Capital of Italy?"},
    ]
    reply = client.chat.completions.create(model="live", messages=messages, max_tokens=5, user="chatter")
    body = {
        "message_id": reply.id,
        "rating": "up",
        "stars": 4,
        "tags": ["wrong_format", "other"],
        "comment": "close, but too long",
        "correction": "Rome.",
        "user": "rater-7",
    }
    response = http.post("/v1/feedback", json=body)
    assert response.status_code == 200, response.text
    saved = response.json()
    assert isinstance(saved["id"], int) and saved["rater"] == "rater-7" and saved["message_id"] == reply.id

    with tiny_server.db() as db:
        rating = dict(db.execute("SELECT * FROM ratings WHERE id = ?", [saved["id"]]).fetchone())
        judged = dict(db.execute("SELECT * FROM messages WHERE id = ?", [reply.id]).fetchone())
        correction = dict(
            db.execute("SELECT * FROM messages WHERE id = ?", [rating["correction_id"]]).fetchone()
        )
    assert rating["message_id"] == reply.id
    assert rating["rater"] == "rater-7"
    assert (rating["rating"], rating["stars"]) == ("up", 4)
    assert json.loads(rating["tags_json"]) == ["wrong_format", "other"]
    assert rating["comment"] == "close, but too long"
    # The judged answer: its version (base model: no adapter) and the frozen prompt it answered.
    assert judged["adapter_version"] is None and judged["model_id"] == "tiny-llama"
    assert reply.system_fingerprint == "base"
    assert json.loads(judged["prompt_json"]) == messages
    assert judged["created_by"] == "chatter"
    assert correction["content"] == "Rome." and correction["corrects_id"] == reply.id
    assert correction["source"] == "correction" and correction["prompt_json"] == judged["prompt_json"]


def test_rating_without_a_user_is_rated_by_address(client: openai.OpenAI, http: httpx.Client) -> None:
    reply = ask(client)
    response = http.post("/v1/feedback", json={"message_id": reply.id, "rating": "down"})
    assert response.status_code == 200
    assert response.json()["rater"] == "anon:127.0.0.1"


def test_compare(client: openai.OpenAI, http: httpx.Client, tiny_server: Server) -> None:
    a, b = ask(client, "Pick a number."), ask(client, "Pick a number.")
    response = http.post(
        "/v1/feedback/compare", json={"message_ids": [a.id, b.id], "winner": "b", "user": USER}
    )
    assert response.status_code == 200, response.text
    with tiny_server.db() as db:
        row = dict(db.execute("SELECT * FROM comparisons WHERE id = ?", [response.json()["id"]]).fetchone())
    assert (row["message_a"], row["message_b"], row["winner"], row["rater"]) == (a.id, b.id, "b", USER)
    bad = http.post("/v1/feedback/compare", json={"message_ids": [a.id, "msg_" + "0" * 24], "winner": "a"})
    assert bad.status_code == 404


# ------------------------------------------------------------------------------------------- API keys
def new_account(http: httpx.Client, server: Server, prefix: str = "keyed") -> tuple[str, str]:
    """An account made through the admin route: (name, its API key)."""
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    response = http.post("/admin/users", json={"name": name}, headers=server.admin_headers())
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["name"] == name and body["role"] == "user" and len(body["password"]) >= 12
    assert body["api_key"].startswith("ak-")
    return name, body["api_key"]


def rating_row(server: Server, rating_id: int) -> dict[str, Any]:
    with server.db() as db:
        return dict(db.execute("SELECT * FROM ratings WHERE id = ?", [rating_id]).fetchone())


def test_admin_route_makes_accounts_with_api_keys(http: httpx.Client, tiny_server: Server) -> None:
    assert http.post("/admin/users", json={"name": "nobody-made-me"}).status_code == 401
    wrong = {"Authorization": "Bearer not-the-token"}
    assert http.post("/admin/users", json={"name": "nobody-made-me"}, headers=wrong).status_code == 401
    name, key = new_account(http, tiny_server)
    admin = tiny_server.admin_headers()
    again = http.post("/admin/users", json={"name": name, "password": "long enough"}, headers=admin)
    assert again.status_code == 422 and "already exists" in again.json()["error"]["message"]
    assert http.post("/admin/users", json={"name": "bad name"}, headers=admin).status_code == 422
    with_password = http.post(
        "/admin/users", json={"name": name + "-pw", "password": "chosen password"}, headers=admin
    )
    assert with_password.status_code == 201 and "password" not in with_password.json()
    listed = {u["name"]: u for u in http.get("/admin/users", headers=admin).json()["data"]}
    assert listed[name]["has_api_key"] is True and "api_key_hash" not in listed[name]
    with tiny_server.db() as db:
        (stored,) = db.execute("SELECT api_key_hash FROM users WHERE name = ?", [name]).fetchone()
    assert stored and key not in stored  # only a hash is kept
    missing = http.post("/admin/users/no-such-user/api-key", headers=admin)
    assert missing.status_code == 404


def test_an_api_key_makes_the_caller_its_account(http: httpx.Client, tiny_server: Server) -> None:
    name, key = new_account(http, tiny_server)
    auth = {"Authorization": f"Bearer {key}"}
    with openai.OpenAI(base_url=f"{tiny_server.base_url}/v1", api_key=key, max_retries=0, timeout=60) as mine:
        reply = ask(mine, user=None)
        labelled = ask(mine, user="team-member")
    assert message_row(tiny_server, reply.id)["created_by"] == name  # type: ignore[index]
    assert message_row(tiny_server, labelled.id)["created_by"] == f"{name}/team-member"  # type: ignore[index]
    # The `user` field only labels a rating under the account; the origin is the account either way.
    for user, rater in ((None, name), (name, name), ("team-member", f"{name}/team-member")):
        body = {"message_id": reply.id, "rating": "up", **({"user": user} if user else {})}
        response = http.post("/v1/feedback", json=body, headers=auth)
        assert response.status_code == 200, response.text
        assert response.json()["rater"] == rater
        row = rating_row(tiny_server, response.json()["id"])
        assert (row["rater"], row["origin"]) == (rater, f"user:{name}")
    compared = http.post(
        "/v1/feedback/compare", json={"message_ids": [reply.id, labelled.id], "winner": "a"}, headers=auth
    )
    assert compared.status_code == 200, compared.text
    with tiny_server.db() as db:
        row = dict(db.execute("SELECT * FROM comparisons WHERE id = ?", [compared.json()["id"]]).fetchone())
    assert (row["rater"], row["origin"]) == (name, f"user:{name}")


def test_any_other_bearer_value_is_anonymous(
    client: openai.OpenAI, http: httpx.Client, tiny_server: Server
) -> None:
    reply = ask(client)  # the openai client sends `Authorization: Bearer x`
    for headers in ({"Authorization": "Bearer x"}, {}, {"Authorization": "Basic Zm9vOmJhcg=="}):
        response = http.post(
            "/v1/feedback",
            json={"message_id": reply.id, "rating": "down", "user": "self-named"},
            headers=headers,
        )
        assert response.status_code == 200, response.text
        row = rating_row(tiny_server, response.json()["id"])
        assert (row["rater"], row["origin"]) == ("self-named", "ip:127.0.0.1")
    anonymous = http.post("/v1/feedback", json={"message_id": reply.id, "rating": "up"})
    assert rating_row(tiny_server, anonymous.json()["id"])["origin"] == "ip:127.0.0.1"


def test_an_unknown_or_revoked_api_key_is_401(http: httpx.Client, tiny_server: Server) -> None:
    name, key = new_account(http, tiny_server)
    admin = tiny_server.admin_headers()
    with openai.OpenAI(base_url=f"{tiny_server.base_url}/v1", api_key=key, max_retries=0, timeout=60) as mine:
        reply = ask(mine)
    rotated = http.post(f"/admin/users/{name}/api-key", headers=admin)
    assert rotated.status_code == 200
    newer = rotated.json()["api_key"]
    assert newer != key
    made_up = "ak-" + "A" * 43
    for bad in (key, made_up, "ak-short"):
        auth = {"Authorization": f"Bearer {bad}"}
        for path, body in (
            ("/v1/feedback", {"message_id": reply.id, "rating": "up"}),
            ("/v1/feedback/compare", {"message_ids": [reply.id, reply.id + "x"], "winner": "a"}),
        ):
            response = http.post(path, json=body, headers=auth)
            assert response.status_code == 401, (bad, path, response.text)
            error = response.json()["error"]
            assert error["code"] == "invalid_api_key" and "API key not recognised" in error["message"]
    with (
        openai.OpenAI(base_url=f"{tiny_server.base_url}/v1", api_key=made_up, max_retries=0, timeout=60) as c,
        pytest.raises(openai.AuthenticationError, match="API key"),
    ):
        ask(c)
    ok = http.post(
        "/v1/feedback",
        json={"message_id": reply.id, "rating": "up"},
        headers={"Authorization": f"Bearer {newer}"},
    )
    assert ok.status_code == 200
    revoked = http.delete(f"/admin/users/{name}/api-key", headers=admin)
    assert revoked.json() == {"name": name, "revoked": True}
    gone = http.post(
        "/v1/feedback",
        json={"message_id": reply.id, "rating": "up"},
        headers={"Authorization": f"Bearer {newer}"},
    )
    assert gone.status_code == 401


# ------------------------------------------------------------------------------------------- reserved names
def test_an_account_name_is_only_rated_under_with_its_key(
    client: openai.OpenAI, http: httpx.Client, tiny_server: Server
) -> None:
    name, key = new_account(http, tiny_server, "reserved")
    reply, other = ask(client), ask(client)  # as USER: not an account
    # Chats first: refused before anything is stored, streaming or not, whatever bearer value is sent.
    for stream in (False, True):
        with pytest.raises(openai.PermissionDeniedError) as info:
            ask(client, user=name, stream=stream)
        assert info.value.status_code == 403 and info.value.code == "reserved_user"
        assert info.value.message.endswith(
            f"'{name}' is an account: send its API key to rate as {name}, or leave `user` out"
        )
    chat_body = {"model": "live", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    for headers in ({}, {"Authorization": "Bearer x"}, tiny_server.admin_headers()):
        for user in (name, f"{name}/helper"):
            for path, body in (
                ("/v1/chat/completions", chat_body),
                ("/v1/feedback", {"message_id": reply.id, "rating": "up"}),
                ("/v1/feedback/compare", {"message_ids": [reply.id, other.id], "winner": "a"}),
            ):
                response = http.post(path, json={**body, "user": user}, headers=headers)
                assert response.status_code == 403, (path, user, headers, response.text)
                error = response.json()["error"]
                assert (error["code"], error["param"], error["type"]) == (
                    "reserved_user",
                    "user",
                    "invalid_request_error",
                )
                owner_key = "send its API key" if user == name else f"send {name}'s API key"
                assert f"'{user}'" in error["message"] and owner_key in error["message"]
    with tiny_server.db() as db:
        stored = [
            db.execute(sql, args).fetchone()[0]
            for sql, args in (
                ("SELECT count(*) FROM ratings WHERE message_id = ?", [reply.id]),
                ("SELECT count(*) FROM comparisons WHERE message_a = ?", [reply.id]),
                ("SELECT count(*) FROM conversations WHERE owner IN (?, ?)", [name, f"{name}/helper"]),
                ("SELECT count(*) FROM messages WHERE created_by IN (?, ?)", [name, f"{name}/helper"]),
            )
        ]
    assert stored == [0, 0, 0, 0], "a refused request stores nothing"

    # With the account's key the name (and its sub-labels) are the account's own.
    auth = {"Authorization": f"Bearer {key}"}
    for user, rater in ((name, name), ("helper", f"{name}/helper")):
        response = http.post(
            "/v1/feedback", json={"message_id": reply.id, "rating": "up", "user": user}, headers=auth
        )
        assert response.status_code == 200, response.text
        assert response.json()["rater"] == rater
    # A name that is no account works as before, and so does a name that merely starts like one.
    for user in (f"{name}-fan", name.upper(), "not an account"):
        response = http.post("/v1/feedback", json={"message_id": reply.id, "rating": "down", "user": user})
        assert response.status_code == 200, response.text
        row = rating_row(tiny_server, response.json()["id"])
        assert (row["rater"], row["origin"]) == (user, "ip:127.0.0.1")


def test_cli_adds_users_and_keys(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from assistant.cli import main
    from feedback.store import Store
    from feedback.users import verify_api_key, verify_user

    data = tmp_path / "data"
    Store(data / "assistant.db").close()
    args = ["--data-dir", str(data)]
    assert main(["users", "add", "carol", *args]) == 0
    out = capsys.readouterr().out
    password = out.split("password: ")[1].split()[0]
    key = out.split("api key:")[1].split()[0]
    assert (
        main(["users", "add", "dave", "--role", "admin", "--password", "dave's password", "--no-key", *args])
        == 0
    )
    assert "password" not in capsys.readouterr().out
    assert main(["users", "add", "carol", *args]) == 2
    assert "already exists" in capsys.readouterr().err
    with Store(data / "assistant.db") as store:
        assert verify_user(store, "carol", password) == {"name": "carol", "role": "user"}
        assert verify_api_key(store, key) == {"name": "carol", "role": "user"}
        assert verify_user(store, "dave", "dave's password") == {"name": "dave", "role": "admin"}
    assert main(["users", "key", "dave", *args]) == 0
    dave_key = capsys.readouterr().out.split("api key:")[1].split()[0]
    assert main(["users", "list", *args]) == 0
    assert capsys.readouterr().out.splitlines() == ["carol\tuser\tapi key", "dave\tadmin\tapi key"]
    assert main(["users", "key", "carol", "--revoke", *args]) == 0
    assert main(["users", "key", "nobody", *args]) == 2
    with Store(data / "assistant.db") as store:
        assert verify_api_key(store, key) is None
        assert verify_api_key(store, dave_key) == {"name": "dave", "role": "admin"}


def test_feedback_on_an_unknown_message_is_404(http: httpx.Client) -> None:
    response = http.post("/v1/feedback", json={"message_id": "msg_" + "f" * 24, "rating": "up"})
    assert response.status_code == 404
    assert "not found" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"stars": 9}, "stars"),
        ({"tags": ["not_a_tag"]}, "tags"),
        ({"rating": "meh"}, "rating"),
        ({"rating": None}, "empty"),
    ],
)
def test_invalid_feedback_is_422(
    client: openai.OpenAI, http: httpx.Client, tiny_server: Server, change: dict[str, Any], field: str
) -> None:
    reply = ask(client)
    response = http.post("/v1/feedback", json={"message_id": reply.id, "rating": "up", **change})
    assert response.status_code == 422, response.text
    assert field in response.json()["error"]["message"]
    with tiny_server.db() as db:
        assert db.execute("SELECT count(*) FROM ratings WHERE message_id = ?", [reply.id]).fetchone()[0] == 0


def test_admin_feedback_needs_the_token(
    client: openai.OpenAI, http: httpx.Client, tiny_server: Server
) -> None:
    reply = ask(client)
    rated = http.post(
        "/v1/feedback",
        json={"message_id": reply.id, "rating": "down", "tags": ["off_topic"], "user": "admin-view"},
    )
    assert rated.status_code == 200
    assert http.get("/admin/feedback").status_code == 401
    assert http.get("/admin/feedback", headers={"Authorization": "Bearer wrong"}).status_code == 401
    response = http.get(
        "/admin/feedback", params={"rater": "admin-view"}, headers=tiny_server.admin_headers()
    )
    assert response.status_code == 200
    rows = response.json()["data"]
    assert [(r["id"], r["message_id"], r["rating"], r["tags"]) for r in rows] == [
        (rated.json()["id"], reply.id, "down", ["off_topic"])
    ]


def test_export_feedback_writes_jsonl(
    client: openai.OpenAI, http: httpx.Client, tiny_server: Server, tmp_path: Path
) -> None:
    reply = ask(client)
    rated = http.post(
        "/v1/feedback", json={"message_id": reply.id, "stars": 2, "comment": "export me", "user": "exporter"}
    )
    assert rated.status_code == 200
    out = tmp_path / "out" / "feedback.jsonl"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "assistant",
            "export",
            "feedback",
            "--out",
            str(out),
            "--data-dir",
            str(tiny_server.data_dir),
        ],
        cwd=REPO,
        env=tiny_server.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    with tiny_server.db() as db:
        total = db.execute("SELECT count(*) FROM ratings").fetchone()[0]
    assert len(rows) == total
    assert f"wrote {total} ratings" in done.stdout
    mine = [r for r in rows if r["id"] == rated.json()["id"]]
    assert len(mine) == 1
    assert mine[0]["message_id"] == reply.id and mine[0]["comment"] == "export me" and mine[0]["stars"] == 2
    assert mine[0]["rater"] == "exporter"


def test_concurrent_ratings_are_each_stored_once(client: openai.OpenAI, tiny_server: Server) -> None:
    threads, per_thread = 16, 200
    targets = [ask(client).id for _ in range(4)]
    start = threading.Barrier(threads)

    def flood(worker: int) -> list[tuple[int, int]]:
        results = []
        with httpx.Client(base_url=tiny_server.base_url, timeout=60) as http:
            start.wait(60)
            for i in range(per_thread):
                body = {
                    "message_id": targets[(worker + i) % len(targets)],
                    "rating": "up" if i % 2 else "down",
                    "stars": 1 + i % 5,
                    "comment": f"w{worker}-{i}",
                    "user": f"flood-{worker}",
                }
                response = http.post("/v1/feedback", json=body)
                results.append((response.status_code, response.json().get("id", -1)))
        return results

    with ThreadPoolExecutor(threads) as pool:
        results = [r for rs in pool.map(flood, range(threads)) for r in rs]
    statuses = {status for status, _ in results}
    assert statuses == {200}
    ids = [rating_id for _, rating_id in results]
    assert len(ids) == threads * per_thread and len(set(ids)) == len(ids)
    with tiny_server.db() as db:
        rows = db.execute("SELECT id, rater, comment FROM ratings WHERE rater LIKE 'flood-%'").fetchall()
    assert len(rows) == threads * per_thread
    assert {r["id"] for r in rows} == set(ids)
    assert len({r["comment"] for r in rows}) == threads * per_thread, "each rating stored exactly once"


# ------------------------------------------------------------------------------------------- anonymous off
def test_without_anonymous_use_chats_and_ratings_need_a_key(members_only_server: Server) -> None:
    server = members_only_server
    chat_body = {"model": "live", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    with httpx.Client(base_url=server.base_url, timeout=60) as http:
        assert http.get("/health").json()["status"] == "ready", "health stays open"
        assert "live" in [m["id"] for m in http.get("/v1/models").json()["data"]], "so does the model list"
        name, key = new_account(http, server, "member")
        auth = {"Authorization": f"Bearer {key}"}
        with openai.OpenAI(base_url=f"{server.base_url}/v1", api_key=key, max_retries=0, timeout=60) as mine:
            reply, other = ask(mine, user=None), ask(mine, user=None)
        assert message_row(server, reply.id)["created_by"] == name  # type: ignore[index]

        for headers in ({}, {"Authorization": "Bearer x"}, {"Authorization": "Basic Zm9vOmJhcg=="}):
            for user in (None, "someone"):
                for path, body in (
                    ("/v1/chat/completions", chat_body),
                    ("/v1/feedback", {"message_id": reply.id, "rating": "up"}),
                    ("/v1/feedback/compare", {"message_ids": [reply.id, other.id], "winner": "a"}),
                ):
                    response = http.post(
                        path, json={**body, **({"user": user} if user else {})}, headers=headers
                    )
                    assert response.status_code == 401, (path, headers, response.text)
                    error = response.json()["error"]
                    assert (error["code"], error["type"]) == ("api_key_required", "invalid_request_error")
                    message = error["message"]
                    assert "Bearer ak-" in message and "python -m assistant users add NAME" in message
                    assert "POST /admin/users" in message
        with (
            openai.OpenAI(
                base_url=f"{server.base_url}/v1", api_key="unused", max_retries=0, timeout=60
            ) as anon,
            pytest.raises(openai.AuthenticationError, match="users add NAME"),
        ):
            ask(anon)
        with server.db() as db:
            assert db.execute("SELECT count(*) FROM ratings").fetchone()[0] == 0
            assert db.execute("SELECT count(*) FROM comparisons").fetchone()[0] == 0
            owners = {r[0] for r in db.execute("SELECT DISTINCT owner FROM conversations")}
        assert owners == {name}, "the refused chats stored nothing"

        # An API key rates as its account; the admin token is let in too (it names no account).
        rated = http.post("/v1/feedback", json={"message_id": reply.id, "rating": "up"}, headers=auth)
        assert rated.status_code == 200, rated.text
        row = rating_row(server, rated.json()["id"])
        assert (row["rater"], row["origin"]) == (name, f"user:{name}")
        compared = http.post(
            "/v1/feedback/compare", json={"message_ids": [reply.id, other.id], "winner": "b"}, headers=auth
        )
        assert compared.status_code == 200, compared.text
        admin = server.admin_headers()
        assert http.post("/v1/chat/completions", json=chat_body, headers=admin).status_code == 200
        by_admin = http.post("/v1/feedback", json={"message_id": reply.id, "rating": "down"}, headers=admin)
        assert by_admin.status_code == 200, by_admin.text
        # ... though not under an account's name: that still takes the account's key.
        as_member = http.post(
            "/v1/feedback", json={"message_id": reply.id, "rating": "down", "user": name}, headers=admin
        )
        assert as_member.status_code == 403
