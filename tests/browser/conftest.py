"""Headless Chromium (Debian's /usr/bin/chromium) driven by Playwright against pytest-django's live_server.

Playwright's own browser download is never used: `executable_path` points at the system Chromium.
The root conftest skips these tests when Chromium is missing (or fails them in CI).
"""

import pytest
from django.db import connections

from dashboards.browser import CHROMIUM, CHROMIUM_ARGS


@pytest.fixture
def browser_page(monkeypatch, live_server):
    """A fresh browser page; function-scoped so the root conftest's Chromium check runs first."""
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the test's own ORM calls are still
    # synchronous and safe.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        page.set_default_timeout(15_000)
        yield page
        context.close()
        browser.close()
        # While Playwright's loop runs, asgiref treats this thread as async and Django hands the test
        # a separate database connection; close it here, or it outlives the test database.
        connections.close_all()


def log_in(page, live_server, username: str, password: str) -> None:
    page.goto(f"{live_server.url}/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_load_state()
