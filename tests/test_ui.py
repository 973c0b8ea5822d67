"""The Gradio UI of a real server subprocess, driven with `gradio_client` (one client = one browser session).

`gradio_client` cannot send event data (what a click on 👍 or an edit carries), so like/edit events are
posted the way the browser posts them: to /gradio_api/queue/join with the client's session hash, the
event's fn_index and trigger, and `event_data`; the answer is read from /gradio_api/queue/data.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

from tests.server import Server

# system prompt, tone, format, safety, say "I don't know", temperature, top_p, max_tokens
CONTROLS = ("", "neutral", "free", "standard", True, 0.7, 1.0, 16)


@pytest.fixture
def client(tiny_server: Server) -> Iterator[Client]:
    c = Client(f"{tiny_server.base_url}/", verbose=False)
    yield c
    c.close()


def chat(client: Client, text: str, history: list[dict[str, Any]] | None = None) -> tuple[list, str]:
    box, history, status = client.predict(text, history or [], *CONTROLS, api_name="/chat")
    assert box == "", "the input box is cleared after sending"
    return history, status


def fire(client: Client, api_name: str, data: list[Any], event_data: dict[str, Any]) -> dict[str, Any]:
    """Run an event the way the browser does, event data included; returns Gradio's final message."""
    dep = next(d for d in client.config["dependencies"] if d.get("api_name") == api_name)
    base = client.src.rstrip("/")
    with httpx.Client(base_url=base, timeout=60) as http:
        joined = http.post(
            "/gradio_api/queue/join",
            json={
                "data": data,
                "event_data": event_data,
                "fn_index": dep["id"],
                "trigger_id": dep["targets"][0][0],
                "session_hash": client.session_hash,
            },
        )
        joined.raise_for_status()
        event_id = joined.json()["event_id"]
        with http.stream(
            "GET", "/gradio_api/queue/data", params={"session_hash": client.session_hash}
        ) as stream:
            for line in stream.iter_lines():
                if not line.startswith("data:"):
                    continue
                message = json.loads(line[5:])
                if message.get("event_id") == event_id and message.get("msg") == "process_completed":
                    return message
    raise AssertionError(f"no answer to {api_name}")


def answer_id(history: list[dict[str, Any]], index: int = -1) -> str:
    message = history[index]
    assert message["role"] == "assistant"
    return message["metadata"]["id"]


def text(message: dict[str, Any]) -> str:
    return "".join(part["text"] for part in message["content"])


def rating_rows(server: Server, message_id: str) -> list[dict[str, Any]]:
    with server.db() as db:
        return [
            dict(r)
            for r in db.execute("SELECT * FROM ratings WHERE message_id = ? ORDER BY id", [message_id])
        ]


def test_chat_then_like_is_stored_with_message_rater_version_and_prompt(
    client: Client, tiny_server: Server
) -> None:
    history, status = chat(client, "Hello, who are you?")
    assert [m["role"] for m in history] == ["user", "assistant"]
    assert text(history[1]).strip(), "the answer has text"
    assert "tokens in" in status and "base model" in status
    message_id = answer_id(history)

    done = fire(client, "like", [None, history], {"index": 1, "value": history[1]["content"], "liked": True})
    assert done["success"], done
    assert "Saved your rating" in done["output"]["data"][1]

    (rating,) = rating_rows(tiny_server, message_id)
    assert rating["rating"] == "up"
    assert rating["rater"].startswith("anon:") and len(rating["rater"]) > len("anon:")
    assert rating["origin"] == "ip:127.0.0.1", "an anonymous session's ratings come from its address"
    with tiny_server.db() as db:
        message = dict(db.execute("SELECT * FROM messages WHERE id = ?", [message_id]).fetchone())
        owner = db.execute(
            "SELECT owner FROM conversations WHERE id = ?", [message["conversation_id"]]
        ).fetchone()
    assert message["content"].strip() == text(history[1]).strip()  # the Chatbot trims the text it shows
    assert message["adapter_version"] is None and message["model_id"] == "tiny-llama"
    assert message["source"] == "ui"
    assert owner["owner"] == rating["rater"] == message["created_by"]
    prompt = json.loads(message["prompt_json"])
    assert prompt[-1] == {"role": "user", "content": "Hello, who are you?"}
    assert prompt[0]["role"] == "system" and prompt[0]["content"], "the system prompt is frozen with it"
    assert json.loads(message["sampling_json"])["max_tokens"] == 16

    # A dislike on the same answer is a newer row; the like stays as history.
    done = fire(client, "like", [None, history], {"index": 1, "value": history[1]["content"], "liked": False})
    assert done["success"]
    assert [r["rating"] for r in rating_rows(tiny_server, message_id)] == ["up", "down"]


def test_like_rates_the_answer_it_was_clicked_on(client: Client, tiny_server: Server) -> None:
    history, _ = chat(client, "First question")
    history, _ = chat(client, "Second question", history)
    first, second = answer_id(history, 1), answer_id(history, 3)
    done = fire(client, "like", [None, history], {"index": 1, "value": history[1]["content"], "liked": True})
    assert done["success"], done
    assert [r["rating"] for r in rating_rows(tiny_server, first)] == ["up"]
    assert rating_rows(tiny_server, second) == []


def test_rating_panel_and_correction(client: Client, tiny_server: Server) -> None:
    history, _ = chat(client, "Tell me about cats.")
    message_id = answer_id(history)
    status = client.predict(
        "down", 2, ["hallucination", "wrong_tone"], "not about cats", "", api_name="/rate"
    )
    assert "Saved" in status
    (rating,) = rating_rows(tiny_server, message_id)
    assert (rating["rating"], rating["stars"], rating["comment"]) == ("down", 2, "not about cats")
    assert json.loads(rating["tags_json"]) == ["hallucination", "wrong_tone"]

    edited = [*history[:1], {**history[1], "content": [{"type": "text", "text": "Cats are small felines."}]}]
    done = fire(
        client,
        "edit",
        [None, edited],
        {
            "index": 1,
            "value": "Cats are small felines.",
            "previous_value": history[1]["content"],
        },
    )
    assert done["success"], done
    rows = rating_rows(tiny_server, message_id)
    assert len(rows) == 2 and rows[1]["correction_id"]
    assert [r["origin"] for r in rows] == ["ip:127.0.0.1", "ip:127.0.0.1"]
    with tiny_server.db() as db:
        correction = dict(
            db.execute("SELECT * FROM messages WHERE id = ?", [rows[1]["correction_id"]]).fetchone()
        )
    assert correction["content"] == "Cats are small felines."
    assert correction["corrects_id"] == message_id and correction["source"] == "correction"


def test_sessions_are_separate_raters_and_cannot_rate_each_others_answers(
    client: Client, tiny_server: Server
) -> None:
    history, _ = chat(client, "Mine")
    other = Client(f"{tiny_server.base_url}/", verbose=False)
    try:
        other_history, _ = chat(other, "Theirs")
        done = fire(
            other,
            "like",
            [None, other_history],
            {"index": 1, "value": other_history[1]["content"], "liked": True},
        )
        assert done["success"]
        # Another session's answer id, sent back from "the browser": refused, nothing stored.
        refused = fire(
            other, "like", [None, history], {"index": 1, "value": history[1]["content"], "liked": True}
        )
        assert not refused["success"]
        assert "not part of this conversation" in refused["output"]["error"]
    finally:
        other.close()
    assert rating_rows(tiny_server, answer_id(history)) == []
    done = fire(client, "like", [None, history], {"index": 1, "value": history[1]["content"], "liked": True})
    assert done["success"]
    (mine,) = rating_rows(tiny_server, answer_id(history))
    (theirs,) = rating_rows(tiny_server, answer_id(other_history))
    assert mine["rater"] != theirs["rater"], "each client session is its own anonymous rater"
    assert mine["origin"] == theirs["origin"] == "ip:127.0.0.1", "but one address is one origin"


def test_a_signed_in_users_ratings_come_from_their_account(client: Client, tiny_server: Server) -> None:
    name = f"ui-rater-{uuid.uuid4().hex[:8]}"
    made = httpx.post(
        f"{tiny_server.base_url}/admin/users",
        json={"name": name, "password": "ui rater password"},
        headers=tiny_server.admin_headers(),
        timeout=30,
    )
    assert made.status_code == 201, made.text
    signed = client.predict(name, "ui rater password", api_name="/do_sign_in")
    assert f"Signed in as **{name}**" in str(signed)
    history, _ = chat(client, "Rate me as a user")
    assert "Saved" in client.predict("up", 4, [], "", "", api_name="/rate")
    (rating,) = rating_rows(tiny_server, answer_id(history))
    assert (rating["rater"], rating["origin"]) == (name, f"user:{name}")


def test_admin_endpoint_is_refused_to_anonymous_and_served_to_the_admin(
    client: Client, tiny_server: Server
) -> None:
    chat(client, "Rate me")
    client.predict("up", 5, [], "admin should see this", "", api_name="/rate")
    with pytest.raises(AppError, match="Admins only"):
        client.predict("", "", "", "", 1, api_name="/feedback_refresh")
    with pytest.raises(AppError, match="Wrong user name or password"):
        client.predict("admin", "not-the-password", api_name="/do_sign_in")
    with pytest.raises(AppError, match="Admins only"):
        client.predict("", "", "", "", 1, api_name="/feedback_refresh")

    signed = client.predict("admin", tiny_server.admin_password, api_name="/do_sign_in")
    assert "Signed in as **admin**" in str(signed)
    table, _by_tag, _daily, summary = client.predict("", "", "", "", 1, api_name="/feedback_refresh")
    assert "ratings" in summary
    comments = [row[table["headers"].index("comment")] for row in table["data"]]
    assert "admin should see this" in comments


# ------------------------------------------------------------------------------------------- compare mode
def compared_answers(server: Server, prompt: str) -> list[dict[str, Any]]:
    with server.db() as db:
        (asked,) = db.execute(
            "SELECT * FROM messages WHERE role = 'user' AND source = 'compare' AND content = ?", [prompt]
        ).fetchall()
        rows = db.execute(
            "SELECT * FROM messages WHERE conversation_id = ? AND role = 'assistant'",
            [asked["conversation_id"]],
        ).fetchall()
    return [dict(r) for r in rows]


def test_compare_answers_with_the_chats_prompt_presets_and_sampling(
    client: Client, tiny_server: Server
) -> None:
    from assistant.presets import Presets, compose_system_prompt

    system, tone, fmt, safety, say_idk = "You are a terse tester.", "formal", "bullet list", "strict", False
    controls = (system, tone, fmt, safety, say_idk, 0.9, 0.8, 48)
    prompt = f"Compare with my settings {uuid.uuid4().hex[:8]}"
    _a, _b, status = client.predict(prompt, *controls, api_name="/compare")
    assert "Which is better?" in status and "raised" not in status
    answers = compared_answers(tiny_server, prompt)
    assert len(answers) == 2
    composed = compose_system_prompt(system, Presets(tone=tone, format=fmt, safety=safety, say_idk=say_idk))
    assert system in composed and "formal" in composed and "I don't know" not in composed
    for answer in answers:
        assert answer["source"] == "compare"
        assert json.loads(answer["prompt_json"]) == [
            {"role": "system", "content": composed},
            {"role": "user", "content": prompt},
        ]
        sampling = json.loads(answer["sampling_json"])
        assert (sampling["max_tokens"], sampling["temperature"], sampling["top_p"]) == (48, 0.9, 0.8)
        assert answer["completion_tokens"] <= 48
        assert json.loads(answer["presets_json"]) == {
            "tone": tone,
            "format": fmt,
            "safety": safety,
            "say_idk": say_idk,
        }
    # The chat with the same controls freezes the same system prompt and sampling: one code path.
    history, _ = client.predict("Same settings in the chat", [], *controls, api_name="/chat")[1:]
    with tiny_server.db() as db:
        chatted = db.execute("SELECT * FROM messages WHERE id = ?", [answer_id(history)]).fetchone()
    assert json.loads(chatted["prompt_json"])[0] == {"role": "system", "content": composed}
    assert json.loads(chatted["sampling_json"]) == json.loads(answers[0]["sampling_json"])

    # Two samples of one version at temperature 0 would be one answer twice: the floor is said and stored.
    prompt = f"Compare greedily {uuid.uuid4().hex[:8]}"
    _a, _b, status = client.predict(prompt, *CONTROLS[:5], 0.0, 1.0, 16, api_name="/compare")
    assert "temperature raised to 0.3" in status
    for answer in compared_answers(tiny_server, prompt):
        assert json.loads(answer["sampling_json"])["temperature"] == 0.3
        assert json.loads(answer["sampling_json"])["max_tokens"] == 16


# ------------------------------------------------------------------------------------------- anonymous off
def test_without_anonymous_use_the_ui_asks_to_sign_in_first(members_only_server: Server) -> None:
    server = members_only_server
    name, password = f"ui-member-{uuid.uuid4().hex[:8]}", "ui member password"
    made = httpx.post(
        f"{server.base_url}/admin/users",
        json={"name": name, "password": password},
        headers=server.admin_headers(),
        timeout=30,
    )
    assert made.status_code == 201, made.text
    anon = Client(f"{server.base_url}/", verbose=False)
    member = Client(f"{server.base_url}/", verbose=False)
    try:
        signed_in = next(
            c for c in anon.config["components"] if c.get("props", {}).get("elem_id") == "signed-in"
        )
        assert "sign in on the **Account** tab" in signed_in["props"]["value"]
        # Every chat and rating handler refuses the anonymous session itself (not only the page).
        with pytest.raises(AppError, match="Sign in first"):
            chat(anon, "Anonymous hello")
        with pytest.raises(AppError, match="Sign in first"):
            anon.predict("Anonymous compare", *CONTROLS, api_name="/compare")
        with pytest.raises(AppError, match="Sign in first"):
            anon.predict("up", 5, [], "", "", api_name="/rate")

        assert f"Signed in as **{name}**" in str(member.predict(name, password, api_name="/do_sign_in"))
        history, _ = chat(member, "Members only hello")
        message_id = answer_id(history)
        # The anonymous session replays the member's answer to the like and edit endpoints: refused.
        liked = fire(
            anon, "like", [None, history], {"index": 1, "value": history[1]["content"], "liked": True}
        )
        assert not liked["success"] and "Sign in first" in liked["output"]["error"]
        edited = fire(
            anon,
            "edit",
            [None, history],
            {"index": 1, "value": "A better answer.", "previous_value": history[1]["content"]},
        )
        assert not edited["success"] and "Sign in first" in edited["output"]["error"]
        with server.db() as db:
            stored = db.execute(
                "SELECT count(*) FROM messages WHERE content IN ('Anonymous hello', 'Anonymous compare')"
            ).fetchone()[0]
        assert stored == 0 and rating_rows(server, message_id) == []

        # Signed in, the same handlers work and rate as the account.
        assert "Saved" in member.predict("up", 4, [], "", "", api_name="/rate")
        (rating,) = rating_rows(server, message_id)
        assert (rating["rater"], rating["origin"]) == (name, f"user:{name}")
        _a, _b, status = member.predict("Members compare", *CONTROLS, api_name="/compare")
        assert "Which is better?" in status
    finally:
        anon.close()
        member.close()
