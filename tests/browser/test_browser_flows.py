"""Two flows in a real browser (Debian chromium through Playwright), each checked in the server's SQLite file.

Compare mode: one prompt answered twice side by side, a vote for A, then rounds voted "tie" and "both
bad"; every vote is one `comparisons` row naming the two answers shown, in the order shown.

The Training tab: an admin presses Train now (the tiny model, feedback seeded through the HTTP API), the
progress bar and the live loss plot move while the job runs, the job ends with a version; a second job is
cancelled from the tab and its row says `cancelled`. Waits poll the page with deadlines, never sleep.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser.conftest import BROWSER_MARKS
from tests.browser.test_browser import eventually, open_ui, sign_in_as_admin
from tests.conftest import TINY_SERVER_ENV
from tests.server import Server
from tests.test_jobs import TOPICS
from training.config import SFTSettings

pytestmark = BROWSER_MARKS


def assert_no_page_errors(page: Any) -> None:
    """Uncaught errors in the page: a chart or widget the browser refused to run fails here, by name."""
    assert page.errors == [], f"the page raised errors: {page.errors}"


# ----------------------------------------------------------------------------------------- compare
def answer_twice(page: Any, prompt: str) -> tuple[str, str]:
    """Ask for two answers to `prompt`; returns the texts shown as A and as B."""
    page.locator("#compare-prompt textarea").fill(prompt)
    page.locator("#compare-go").click()
    # After a vote the status says "Vote saved": this text only comes with the new pair of answers.
    page.locator("#compare-status").get_by_text("Which is better?").wait_for()
    return tuple(  # type: ignore[return-value]
        page.locator(f"#answer-{side} [data-testid='markdown']").inner_text().strip() for side in "ab"
    )


def vote(page: Any, winner: str) -> None:
    page.locator(f"#vote-{winner.replace('_', '-')}").click()
    page.locator("#compare-status").get_by_text(f"Vote saved: {winner.replace('_', ' ')}.").wait_for()


def compared_answers(server: Server, prompt: str) -> list[dict[str, Any]]:
    """The two stored answers to the compare prompt `prompt` (one conversation, one user message)."""
    with server.db() as db:
        asked = db.execute(
            "SELECT * FROM messages WHERE role = 'user' AND source = 'compare' AND content = ?", [prompt]
        ).fetchall()
        assert len(asked) == 1, f"one stored prompt {prompt!r}, got {len(asked)}"
        answers = db.execute(
            "SELECT * FROM messages WHERE conversation_id = ? AND role = 'assistant' ORDER BY created_at",
            [asked[0]["conversation_id"]],
        ).fetchall()
    assert len(answers) == 2 and {a["source"] for a in answers} == {"compare"}
    return [dict(a) for a in answers]


def comparisons(server: Server) -> list[dict[str, Any]]:
    with server.db() as db:
        return [dict(r) for r in db.execute("SELECT * FROM comparisons ORDER BY id")]


def words(text: str) -> str:
    """Text without markup or spacing: what Markdown rendering keeps of an answer."""
    return re.sub(r"[\W_]+", "", text)


def likeness(shown: str, stored: str) -> float:
    return difflib.SequenceMatcher(None, words(shown), words(stored)).ratio()


def check_vote_row(
    server: Server, row: dict[str, Any], prompt: str, shown: tuple[str, str], winner: str
) -> None:
    """`row` names this prompt's two answers, the one shown as A as message_a, and the winner."""
    answers = {a["id"]: a for a in compared_answers(server, prompt)}
    assert {row["message_a"], row["message_b"]} == set(answers), "the vote names the two answers shown"
    stored_a, stored_b = answers[row["message_a"]]["content"], answers[row["message_b"]]["content"]
    # The tiny model's answers are random text, so each shown answer is far likelier to its own row.
    assert likeness(shown[0], stored_a) > 0.8 and likeness(shown[0], stored_a) > likeness(shown[0], stored_b)
    assert likeness(shown[1], stored_b) > 0.8 and likeness(shown[1], stored_b) > likeness(shown[1], stored_a)
    assert row["winner"] == winner and row["rater"].startswith("anon:")


def test_compare_mode_votes_land_in_sqlite(page: Any, tiny_server: Server) -> None:
    open_ui(page, tiny_server)
    before = len(comparisons(tiny_server))
    page.locator("#compare-panel").get_by_text("Compare two answers").click()

    prompt = "Compare round 1: name a colour."
    shown = answer_twice(page, prompt)
    assert all(shown) and shown[0] != shown[1], shown
    for side in "AB":  # the two answers say which is A and which is B
        page.locator(f"#side-{side.lower()}").get_by_text(side, exact=True).wait_for()
    vote(page, "a")
    rows = comparisons(tiny_server)
    assert len(rows) == before + 1
    check_vote_row(tiny_server, rows[-1], prompt, shown, "a")
    rater = rows[-1]["rater"]

    # One vote per pair: a second click has nothing to vote on and stores nothing.
    page.locator("#vote-b").click()
    page.get_by_text("Ask for two answers first.").first.wait_for()
    assert len(comparisons(tiny_server)) == before + 1

    for round_no, winner in ((2, "tie"), (3, "both_bad")):
        prompt = f"Compare round {round_no}: name a fruit."
        shown = answer_twice(page, prompt)
        vote(page, winner)
        rows = comparisons(tiny_server)
        assert len(rows) == before + round_no
        check_vote_row(tiny_server, rows[-1], prompt, shown, winner)
        assert rows[-1]["rater"] == rater, "one browser session, one rater"
    assert_no_page_errors(page)


# ---------------------------------------------------------------------------------------- training
TRAINING_SERVER_ENV = {
    **TINY_SERVER_ENV,
    "ASSISTANT_SCHEDULE_ENABLED": "false",  # only the admin's clicks start jobs
    # The gate at the end of a job: a few suite items of a few tokens (the job inherits the server's env).
    "ASSISTANT_GATE_SUITE_ITEMS": "4",
    "ASSISTANT_GATE_MAX_NEW_TOKENS": "4",
}
STATUS_RE = re.compile(r"Job (job_\w+): (\w+) · (\S+) · step (\d+)/(\d+)")
JOB_ID_RE = re.compile(r"job_\w+")


@pytest.fixture(scope="module")
def training_server(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server of its own: its jobs, versions and core hand-overs must not leak into the shared one."""
    from tests.server import running_server

    data_dir = tmp_path_factory.mktemp("training-server") / "data"
    with running_server(data_dir, model_path=tiny_model_dir, env=TRAINING_SERVER_ENV) as server:
        seed_corrections(server)
        yield server


def seed_corrections(server: Server) -> None:
    """Users correct one answer each: every correction is an SFT item, a DPO pair and a KTO 👎."""
    with httpx.Client(base_url=server.base_url, timeout=60) as http:
        for i, topic in enumerate(TOPICS):
            user = f"user{i % 6}"  # curation caps each rater's share of the data
            question = f"How do {topic} work?"
            reply = http.post(
                "/v1/chat/completions",
                json={"messages": [{"role": "user", "content": question}], "max_tokens": 4, "user": user},
            )
            assert reply.status_code == 200, reply.text
            rated = http.post(
                "/v1/feedback",
                json={
                    "message_id": reply.json()["id"],
                    "rating": "down",
                    "user": user,
                    "correction": f"In short: {topic} follow simple rules.",
                },
            )
            assert rated.status_code == 200, rated.text


def training_view(page: Any) -> dict[str, Any]:
    """What the tab shows now: the status line, the bar's fill (%) and the points of the loss plot."""
    seen = page.evaluate(
        """() => {
            const fill = document.querySelector('#train-progress-fill');
            const lines = [...document.querySelectorAll('#loss-plot .mark-line path')];
            const vertices = p => ((p.getAttribute('d') || '').match(/[ML]/g) || []).length;
            const points = lines.reduce((n, p) => n + vertices(p), 0);
            return {text: document.querySelector('#train-status').innerText,
                    fill: fill ? parseFloat(fill.style.width) : null, points};
        }"""
    )
    match = STATUS_RE.search(seen["text"])
    if match:
        job, status, phase, step, total = match.groups()
        seen.update(job=job, status=status, phase=phase, step=int(step), total=int(total))
    else:
        seen.update(job=None, status=None, phase=None, step=None, total=None)
    return seen


def watch(
    page: Any, job_id: str, want: Any, timeout: float = 120.0, *, ended: bool = False
) -> dict[str, Any]:
    """Poll the tab until the view of job `job_id` satisfies `want(view)`; unless `ended`, a job that ends
    without satisfying it fails at once."""
    last: dict[str, Any] = {}

    def check() -> dict[str, Any] | None:
        nonlocal last
        last = training_view(page)
        assert_no_page_errors(page)
        if last["job"] != job_id:
            return None
        if want(last):
            return last
        assert ended or last["status"] in ("queued", "running"), f"job {job_id} ended: {last['text']}"
        return None

    return eventually(check, timeout, what=lambda: f"the tab shows {last}")  # type: ignore[no-any-return]


def start_job(page: Any, sft_max_steps: int, previous: str | None = None) -> str:
    """Press Train now with this SFT step cap (0: the config's own); returns the new job's id."""
    page.get_by_label("SFT max steps (0 = default)").fill(str(sft_max_steps))
    page.locator("#train-now").click()
    message = page.locator("#train-message")
    message.get_by_text("Started job").wait_for()
    job_id = eventually(
        lambda: (ids := JOB_ID_RE.findall(message.inner_text())) and ids[0] != previous and ids[0]
    )
    return str(job_id)


def job_row(server: Server, job_id: str) -> dict[str, Any]:
    with server.db() as db:
        return dict(db.execute("SELECT * FROM training_jobs WHERE id = ?", [job_id]).fetchone())


def logged_losses(server: Server, job_id: str) -> int:
    with server.db() as db:
        return int(
            db.execute(
                "SELECT COUNT(*) FROM job_progress WHERE job_id = ? AND loss IS NOT NULL", [job_id]
            ).fetchone()[0]
        )


def test_training_tab_progress_loss_plot_and_cancel(page: Any, training_server: Server) -> None:
    server = training_server
    open_ui(page, server)
    sign_in_as_admin(page, server)
    page.get_by_role("tab", name="Training").click()
    page.locator("#train-status").get_by_text("No training job yet").wait_for()

    # 12 SFT steps (the seeded feedback alone would plan 13) and 3 DPO steps: even on an idle machine the
    # steps last several of the tab's 2 s refreshes, so it sees the job mid-way; seconds of work in all.
    first = start_job(page, sft_max_steps=12)
    early = watch(
        page, first, lambda v: v["status"] == "running" and 1 <= v["step"] < v["total"] and v["points"]
    )
    later = watch(page, first, lambda v: v["step"] > early["step"] and v["points"] > early["points"])
    assert later["fill"] > early["fill"] > 0, (early, later)

    done = watch(page, first, lambda v: v["status"] == "succeeded")
    assert done["step"] == done["total"] and done["fill"] == 100.0, done
    row = job_row(server, first)
    assert row["status"] == "succeeded" and row["version"] == "v0001", row
    assert f"version {row['version']}" in page.locator("#train-status").inner_text()
    planned = json.loads(row["data_json"])["result"]["planned_steps"]
    assert planned["sft"] == 12 and sum(planned.values()) == done["total"], planned  # the cap typed in
    # The plot ends with every loss the job logged: one per optimizer step, SFT and DPO.
    losses = logged_losses(server, first)
    assert losses == done["total"]
    watch(page, first, lambda v: v["points"] == losses, timeout=30, ended=True)

    # A second job with the form's default (0: no cap), cancelled from the tab while it starts.
    second = start_job(page, sft_max_steps=0, previous=first)
    watch(page, second, lambda v: v["status"] in ("queued", "running"))
    page.locator("#cancel-job").click()
    page.locator("#train-message").get_by_text(f"Cancel requested for {second}").wait_for()
    cancelled = watch(page, second, lambda v: v["status"] == "cancelled", timeout=90)
    assert cancelled["text"].startswith(f"Job {second}: cancelled"), cancelled
    row = job_row(server, second)
    assert row["status"] == "cancelled" and row["version"] is None and row["finished_at"], row
    assert json.loads(row["config_json"])["sft"]["max_steps"] == SFTSettings().max_steps  # 0: no cap
    assert job_row(server, first)["status"] == "succeeded"
    assert_no_page_errors(page)
