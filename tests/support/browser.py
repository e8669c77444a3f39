"""A real browser for the tests: Debian's chromium, driven by Playwright (its own download is never used).

``browser`` is a session fixture (one chromium for the whole run); tests open a context each, so
cookies and cached credentials never leak from one test to the next. Screenshots go to the test's
``tmp_path`` (and to ``$BROWSER_SCREENSHOTS`` when set, for a person to look at).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        # An error, not a skip: .ci/run installs chromium, and a skipped browser test hides a broken install.
        raise RuntimeError(f"{CHROMIUM} is missing: install the Debian package chromium")
    with sync_playwright() as playwright:
        # As root, chromium needs --no-sandbox; the pages tested are our own, on 127.0.0.1.
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield launched
        finally:
            launched.close()


def screenshot(page: Page, directory: Path, name: str) -> Path:
    """A full-page PNG of what a person sees, kept beside the test (and copied for people if asked)."""
    path = directory / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    wanted = os.environ.get("BROWSER_SCREENSHOTS")
    if wanted:
        Path(wanted).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(wanted) / path.name)
    return path


def log_in(page: Page, url: str, username: str, password: str) -> None:
    """What a person does at ``url``: open the dashboard's login form, fill it in and send it."""
    page.goto(url + "/")
    page.fill("#username", username)
    page.fill("#password", password)
    page.click("#login button[type=submit]")
