"""What the browser tests share: Debian chromium driven by Playwright (sync API), one browser per module and
a fresh context (cookies, storage: a new session) per test.

    pytestmark = BROWSER_MARKS        # marked `browser`; skipped where chromium is not installed

The `page` fixture records the page's uncaught errors in `page.errors` (a blocked script, e.g. one the
server's Content-Security-Policy refuses, shows up there and nowhere else), the loads the policy refused
in `page.csp_violations` (Chromium logs them to the console), and dismisses every dialog, recording its
message in `page.dialogs` (an XSS payload calling alert() would open one).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import Any

import pytest

CHROMIUM = shutil.which("chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TIMEOUT_MS = 60_000

BROWSER_MARKS = [
    pytest.mark.browser,
    pytest.mark.skipif(
        CHROMIUM is None, reason="Debian chromium is not installed (apt-get install -y chromium)"
    ),
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1360, "height": 1000})
    context.set_default_timeout(TIMEOUT_MS)
    pg = context.new_page()
    pg.errors = []  # type: ignore[attr-defined]
    pg.on("pageerror", lambda error: pg.errors.append(str(error)))  # type: ignore[attr-defined]
    pg.csp_violations = []  # type: ignore[attr-defined]
    pg.on(
        "console",
        lambda msg: "Content Security Policy" in msg.text and pg.csp_violations.append(msg.text),  # type: ignore[attr-defined]
    )
    pg.dialogs = []  # type: ignore[attr-defined]

    def on_dialog(dialog: Any) -> None:
        pg.dialogs.append(dialog.message)  # type: ignore[attr-defined]
        dialog.dismiss()

    pg.on("dialog", on_dialog)
    yield pg
    context.close()
