"""Stored and reflected XSS in a real browser: hostile text everywhere users can put text, rendered where
people read it (the chat, and the admin's Feedback and Data tabs), must stay text.

Every payload sets a canary (`window.__xss`) or opens a dialog if it ever runs; the test fails if the
canary is set or a dialog fires. A positive control (an `<img onerror>` the test adds to the page itself)
proves the browser would have run such handlers in the time allowed.

Payloads arrive as chat messages (typed in the UI and posted to the API), corrections (the chatbot's Edit
and the API), rating comments, rater names (the API's `user` field) and tags (refused: only known tags).
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx

from tests.browser.conftest import BROWSER_MARKS
from tests.browser.test_browser import open_ui
from tests.server import Server

pytestmark = BROWSER_MARKS

MARK = "XSSMARK"  # in every payload: proves the payload was rendered (as text)
PAYLOADS = [
    f'{MARK}1 <img src=x onerror="window.__xss=1">',
    f"{MARK}2 <script>window.__xss=2</script>",
    f'{MARK}3 <a href="javascript:window.__xss=3">click me</a>',
    f'{MARK}4 <svg onload="window.__xss=4"></svg>',
    f'{MARK}5 "><img src=x onerror=window.__xss=5>',
    f"{MARK}6 [click](javascript:window.__xss=6)",
    f'{MARK}7 <iframe srcdoc="<script>parent.__xss=7</script>"></iframe>',
    f'{MARK}8 <details open ontoggle="window.__xss=8">x</details>',
    f"{MARK}9 <img src=x onerror=alert(9)>",
    f'{MARK}10 <math><mtext><table><mglyph><style><img src=x onerror="window.__xss=10">',
]
RATER = f'{MARK}r <img src=x onerror="window.__xss=20">'


def assert_no_script_ran(page: Any) -> None:
    """Control first: an onerror handler the test injects itself must fire; then no payload's may have."""
    token = uuid.uuid4().hex
    page.evaluate(
        """token => { const img = document.createElement('img');
        img.onerror = () => { window.__control = token; }; img.src = '/no-such-image-' + token;
        document.body.appendChild(img); }""",
        token,
    )
    page.wait_for_function("token => window.__control === token", arg=token)
    time.sleep(0.5)  # the payloads' own images were requested earlier; give stragglers a moment
    assert page.evaluate("() => window.__xss") is None, "a payload ran script"
    assert page.dialogs == [], f"a payload opened a dialog: {page.dialogs}"
    hrefs = page.evaluate("() => [...document.querySelectorAll('a[href]')].map(a => a.getAttribute('href'))")
    assert not [h for h in hrefs if h.strip().lower().startswith("javascript:")], hrefs
    frames = page.evaluate("() => document.querySelectorAll('iframe[srcdoc]').length")
    assert frames == 0
    assert page.csp_violations == [], f"the UI tripped its own CSP: {page.csp_violations}"
    assert page.errors == [], f"the page threw: {page.errors}"


def seed_through_the_api(server: Server) -> str:
    """Attacker-side: a chat with payloads, corrections and comments with payloads, under a payload name.
    Returns the answer's id."""
    with httpx.Client(base_url=server.base_url, timeout=60) as http:
        reply = http.post(
            "/v1/chat/completions",
            json={
                "messages": [{"role": "user", "content": " ".join(PAYLOADS)}],
                "max_tokens": 4,
                "user": RATER,
            },
        )
        assert reply.status_code == 200, reply.text
        message_id = reply.json()["id"]
        for i, payload in enumerate(PAYLOADS):
            body = {
                "message_id": message_id,
                "user": RATER,
                "comment": payload,
                "stars": 1 + i % 5,
                # an unsafe tag sends the correction to the admin's review queue
                "correction": payload,
                "tags": ["unsafe"] if i % 2 else ["hallucination"],
            }
            response = http.post("/v1/feedback", json=body)
            assert response.status_code == 200, response.text
        refused = http.post(
            "/v1/feedback",
            json={"message_id": message_id, "user": RATER, "tags": ['<img src=x onerror="window.__xss=30">']},
        )
        assert refused.status_code == 422, "only known tags are accepted"
    return message_id


def send(page: Any, text: str) -> None:
    answers = page.locator("[data-testid='bot']")
    before = answers.count()
    page.locator("#chat-input textarea").fill(text)
    page.locator("#send").click()
    answers.nth(before).wait_for()  # the new answer's bubble, then its final status line
    page.locator("#chat-status").get_by_text("tokens in").wait_for()


def correct_last_answer(page: Any, text: str) -> None:
    page.locator(".message-buttons-left").last.get_by_label("Edit", exact=True).click()
    page.locator("textarea.edit-textarea").last.fill(text)
    page.get_by_label("Submit", exact=True).click()
    page.locator("#chat-status").get_by_text("Your correction will teach the next version.").wait_for()


def comment_in_panel(page: Any, comment: str) -> None:
    page.locator("#rating-panel").get_by_text("Rate the selected answer").click()
    page.get_by_label("Comment", exact=True).fill(comment)
    page.locator("#save-rating").click()
    page.locator("#chat-status").get_by_text("Saved your rating").wait_for()


def sign_in_as_admin(page: Any, server: Server) -> None:
    page.get_by_role("tab", name="Account").click()
    page.locator("#login-name").locator("input, textarea").first.fill("admin")
    page.locator("#login-password").locator("input").first.fill(server.admin_password)
    page.locator("#login").click()
    page.locator("#signed-in").get_by_text("Signed in as").wait_for()


def test_payloads_stay_text_in_the_chat_and_the_admin_tabs(page: Any, tiny_server: Server) -> None:
    seed_through_the_api(tiny_server)
    open_ui(page, tiny_server)

    # The chat: hostile text typed by the user, then a hostile correction and comment on the answer.
    for payload in PAYLOADS[:5]:
        send(page, payload)
    correct_last_answer(page, " ".join(PAYLOADS))
    comment_in_panel(page, " ".join(PAYLOADS[5:]))
    chat_text = page.locator("#chatbot, [data-testid='bot'], [data-testid='user']").all_inner_texts()
    assert any(f"{MARK}1" in t for t in chat_text), "the typed payload is shown, as text"
    assert any(f"{MARK}10" in t for t in chat_text), "the corrected answer is shown, as text"
    assert_no_script_ran(page)

    # The admin's Feedback tab: the API's rater name, comments and corrections, then the browser's own.
    sign_in_as_admin(page, tiny_server)
    page.get_by_role("tab", name="Feedback").click()
    page.get_by_label("Rater", exact=True).fill(RATER)
    page.locator("#feedback-refresh").click()
    table = page.locator("#feedback-table")
    table.get_by_text(f"{MARK}1").filter(visible=True).first.wait_for()
    assert_no_script_ran(page)
    with tiny_server.db() as db:
        anon = db.execute(
            "SELECT rater FROM ratings WHERE comment LIKE ? ORDER BY id DESC LIMIT 1", [f"{MARK}6%"]
        ).fetchone()["rater"]
    page.get_by_label("Rater", exact=True).fill(anon)
    page.locator("#feedback-refresh").click()
    table.get_by_text(f"{MARK}6").filter(visible=True).first.wait_for()
    assert_no_script_ran(page)

    # The Data tab: curated items, their raters and the review queue (the payload corrections wait there).
    page.get_by_role("tab", name="Data").click()
    page.locator("#data-refresh").click()
    page.get_by_text("review queue:").first.wait_for()
    with tiny_server.db() as db:
        rows = db.execute("SELECT * FROM review_items WHERE status = 'pending' ORDER BY created_at, id")
        pending = [str(dict(r)) for r in rows]
    position = next((i for i, p in enumerate(pending) if MARK in p), None)
    assert position is not None, "the payload corrections wait for review"
    page.get_by_label("Page", exact=True).filter(visible=True).first.fill(str(position // 50 + 1))
    page.locator("#data-refresh").click()
    page.locator("#review-table").get_by_text(MARK).filter(visible=True).first.wait_for()
    assert_no_script_ran(page)
