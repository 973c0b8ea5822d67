"""The UI in a real browser: Debian chromium driven by Playwright (sync API) against a server subprocess.

Chat, 👍 on the answer, the rating panel, a correction through the chatbot's Edit button, the admin's
Feedback tab; every step is checked in the SQLite file. The slow test does it with the real model and
writes docs/screenshot-chat.png and docs/screenshot-feedback.png.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.browser.conftest import BROWSER_MARKS
from tests.server import REPO, Server

DOCS = REPO / "docs"

pytestmark = BROWSER_MARKS


# ------------------------------------------------------------------------------------------- steps
def open_ui(page: Any, server: Server) -> None:
    page.goto(server.base_url)
    page.locator("#chat-input textarea").wait_for()
    # The page's load event gives this browser its own session: wait for it before acting.
    page.locator("#signed-in").get_by_text("Not signed in.").wait_for()


def send(page: Any, text: str) -> str:
    """Send a message, wait until the answer is complete; returns the answer's text."""
    answers = page.locator("[data-testid='bot']")
    before = answers.count()
    page.locator("#chat-input textarea").fill(text)
    page.locator("#send").click()
    page.locator("#chat-status").get_by_text("tokens in").wait_for()
    assert answers.count() == before + 1
    answer = answers.last.inner_text().strip()
    assert answer, "the answer has text"
    return answer


def status_says(page: Any, text: str) -> None:
    page.locator("#chat-status").get_by_text(text).wait_for()


def answer_row(server: Server, text: str) -> dict[str, Any]:
    """The stored answer whose content is the text the browser shows (the Chatbot trims it)."""
    with server.db() as db:
        rows = [
            dict(r) for r in db.execute("SELECT * FROM messages WHERE role = 'assistant' AND source = 'ui'")
        ]
    matches = [r for r in rows if r["content"].strip() == text.strip()]
    assert len(matches) == 1, f"no single stored answer with the text {text!r}"
    return matches[0]


def ratings(server: Server, message_id: str) -> list[dict[str, Any]]:
    with server.db() as db:
        return [
            dict(r)
            for r in db.execute("SELECT * FROM ratings WHERE message_id = ? ORDER BY id", [message_id])
        ]


def eventually(check: Any, timeout: float = 30.0, what: str | Callable[[], str] = "") -> Any:
    """Poll `check` until it returns something truthy (returned); fail after `timeout` seconds, saying
    `what` (a callable is called then, e.g. to show the page's state)."""
    deadline = time.monotonic() + timeout
    while not (result := check()):
        if time.monotonic() >= deadline:
            detail = what() if callable(what) else what
            raise AssertionError(f"condition not met in {timeout:.0f} s" + (f": {detail}" if detail else ""))
        time.sleep(0.05)  # polling pace, bounded by the deadline
    return result


def like_answer(page: Any) -> None:
    page.locator(".message-buttons-left").last.get_by_label("Like", exact=True).click()
    status_says(page, "Saved your rating")


def rate_in_panel(page: Any, stars: int, tag_label: str, comment: str) -> None:
    page.locator("#rating-panel").get_by_text("Rate the selected answer").click()
    page.locator(f"[data-testid='{stars}-radio-label']").click()
    page.get_by_label(tag_label, exact=True).check()
    page.get_by_label("Comment", exact=True).fill(comment)
    page.locator("#save-rating").click()


def correct_answer(page: Any, text: str) -> None:
    page.locator(".message-buttons-left").last.get_by_label("Edit", exact=True).click()
    editor = page.locator("textarea.edit-textarea")
    editor.fill(text)
    page.get_by_label("Submit", exact=True).click()
    status_says(page, "Your correction will teach the next version.")


def sign_in_as_admin(page: Any, server: Server) -> None:
    feedback_tab = page.get_by_role("tab", name="Feedback")
    assert feedback_tab.count() == 0 or not feedback_tab.is_visible(), "admin tab hidden from anonymous users"
    page.get_by_role("tab", name="Account").click()
    page.locator("#login-name").locator("input, textarea").first.fill("admin")
    page.locator("#login-password").locator("input").first.fill(server.admin_password)
    page.locator("#login").click()
    page.locator("#signed-in").get_by_text("Signed in as").wait_for()
    feedback_tab.wait_for(state="visible")


def show_feedback(page: Any, rater: str, expect: str) -> None:
    page.get_by_role("tab", name="Feedback").click()
    page.get_by_label("Rater", exact=True).fill(rater)
    page.locator("#feedback-refresh").click()
    # The table re-renders in place: wait on its visible text, not on a cell element.
    page.wait_for_function(
        "text => document.querySelector('#feedback-table').innerText.includes(text)", arg=expect
    )
    summary = page.get_by_text(re.compile(r"^\d+ ratings · page 1$"))
    assert int(summary.inner_text().split()[0]) >= 1, "the summary counts the ratings"


# ------------------------------------------------------------------------------------------- tests
def test_chat_like_rate_correct_and_admin_feedback(page: Any, tiny_server: Server) -> None:
    open_ui(page, tiny_server)
    answer = send(page, "Hello from the browser")
    stored = answer_row(tiny_server, answer)
    assert stored["adapter_version"] is None and stored["model_id"] == "tiny-llama"
    prompt = json.loads(stored["prompt_json"])
    assert prompt[0]["role"] == "system" and prompt[-1] == {
        "role": "user",
        "content": "Hello from the browser",
    }

    like_answer(page)
    (liked,) = ratings(tiny_server, stored["id"])
    assert liked["rating"] == "up" and liked["rater"].startswith("anon:")
    rater = liked["rater"]

    correct_answer(page, "Hello! How can I help you today?")
    rows = ratings(tiny_server, stored["id"])
    assert len(rows) == 2 and rows[1]["rater"] == rater and rows[1]["correction_id"]
    with tiny_server.db() as db:
        fixed = dict(db.execute("SELECT * FROM messages WHERE id = ?", [rows[1]["correction_id"]]).fetchone())
    assert fixed["content"] == "Hello! How can I help you today?"
    assert fixed["corrects_id"] == stored["id"] and fixed["source"] == "correction"

    rate_in_panel(page, stars=4, tag_label="wrong format", comment="browser says: too long")
    # The edit's status ("Saved ... Your correction will teach ...") gives way to the plain "Saved ...".
    page.wait_for_function(
        "() => { const t = document.querySelector('#chat-status').innerText;"
        " return t.includes('Saved your rating') && !t.includes('correction'); }"
    )
    rows = ratings(tiny_server, stored["id"])
    assert len(rows) == 3
    assert (rows[2]["stars"], rows[2]["comment"], rows[2]["rater"]) == (4, "browser says: too long", rater)
    assert json.loads(rows[2]["tags_json"]) == ["wrong_format"]

    sign_in_as_admin(page, tiny_server)
    show_feedback(page, rater, "browser says: too long")
    table = page.locator("#feedback-table").inner_text()
    assert "wrong_format" in table and rater in table


@pytest.mark.slow
def test_real_model_screenshots(page: Any, real_server: Server) -> None:
    open_ui(page, real_server)
    page.get_by_text("Sampling").click()
    page.get_by_label("number input for Temperature").fill("0")
    page.get_by_label("number input for Temperature").press("Enter")
    page.get_by_text("Sampling").click()
    answer = send(page, "What is the capital of France?")
    assert "Paris" in answer
    stored = answer_row(real_server, answer)
    assert json.loads(stored["sampling_json"])["temperature"] == 0
    like_answer(page)
    DOCS.mkdir(exist_ok=True)
    page.screenshot(path=str(DOCS / "screenshot-chat.png"))

    rate_in_panel(page, stars=5, tag_label="other", comment="Correct and concise.")
    # The status already reads "Saved ..." from the like: poll the database instead, with a deadline.
    (liked, rated) = eventually(
        lambda: (rows := ratings(real_server, stored["id"])) and len(rows) == 2 and rows
    )
    assert liked["rating"] == "up" and rated["comment"] == "Correct and concise." and rated["stars"] == 5
    sign_in_as_admin(page, real_server)
    show_feedback(page, "", "Correct and concise.")
    # The two charts render after the table: wait for their marks before the picture.
    page.wait_for_function("() => document.querySelectorAll('.vega-embed .marks').length >= 2")
    page.screenshot(path=str(DOCS / "screenshot-feedback.png"))
    assert (DOCS / "screenshot-chat.png").stat().st_size > 10_000
    assert (DOCS / "screenshot-feedback.png").stat().st_size > 10_000
