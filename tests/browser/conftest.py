"""Browser test fixtures: the app served by uvicorn in a thread, and Chromium through Playwright.

- ``live_server``: base URL of the app on a free port, against the test database of
  ``app_env`` (so a test runs on SQLite and PostgreSQL like every other ``app_env`` test).
- ``browser_page`` (alias ``page``): a fresh Playwright page in its own context (own cookies
  and localStorage); ``dialogs`` lists any JavaScript dialog it saw (dismissed, unless the test
  sets ``page.accept_dialogs = True``).
- ``artifacts_dir``: ``test-artifacts/`` at the repository root, for screenshots.

Without Playwright or Chromium the tests skip with the reason, unless
PREFLOOP_TEST_REQUIRE_SERVICES=1 (CI), which makes that a failure.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REQUIRE_SERVICES, TestUser
from tests.live_server import serving

CHROMIUM = os.environ.get("PREFLOOP_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def _unavailable(message: str) -> None:
    if REQUIRE_SERVICES:
        pytest.fail(message + " and PREFLOOP_TEST_REQUIRE_SERVICES=1", pytrace=False)
    pytest.skip(message)


@pytest.fixture
def live_server(app_env: str) -> Iterator[str]:
    """The app on http://127.0.0.1:<free port>, stopped after the test (before tables are
    emptied)."""
    from app.main import create_app

    with serving(create_app()) as port:
        yield f"http://127.0.0.1:{port}"


# package scope, not session: Playwright's sync API keeps an event loop running in the main
# thread while it lives, which breaks later tests that start their own (TestClient streams)
@pytest.fixture(scope="package")
def _browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        _unavailable(f"playwright is not installed ({exc})")
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        _unavailable(f"Chromium not found at {CHROMIUM} (set PREFLOOP_TEST_CHROMIUM)")
    with sync_playwright() as playwright:
        try:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        except Exception as exc:
            _unavailable(f"Chromium at {CHROMIUM} did not start ({exc})")
        yield browser
        browser.close()


@pytest.fixture
def browser_page(_browser: Any) -> Iterator[Any]:
    context = _browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.dialogs = []
    # a test that expects a confirmation (cancel a job, release tasks) sets this to answer "OK"
    page.accept_dialogs = False

    def _record_dialog(dialog: Any) -> None:
        page.dialogs.append(dialog.message)
        if page.accept_dialogs:
            dialog.accept()
        else:
            dialog.dismiss()

    page.on("dialog", _record_dialog)
    yield page
    context.close()


@pytest.fixture
def page(browser_page: Any) -> Any:
    return browser_page


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


def log_in(page: Any, base_url: str, user: TestUser) -> None:
    """Log in through the real login form."""
    page.goto(f"{base_url}/login")
    page.fill('input[name="username"]', user.username)
    page.fill('input[name="password"]', user.password)
    page.click('button[type="submit"]')
    page.wait_for_url(lambda url: "/login" not in url)


def axe_violations(page: Any, impacts: tuple[str, ...] = ("serious", "critical")) -> list[str]:
    """axe-core's violations of ``impacts`` on the page as loaded: one line per rule and node.

    axe-core itself (the npm package's ``axe.min.js``) comes with the ``axe-playwright-python``
    dev dependency; it is injected into the page and run there."""
    import axe_playwright_python

    script = Path(axe_playwright_python.__file__).with_name("axe.min.js")
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        # evaluated through the DevTools protocol, so the page's Content-Security-Policy (no
        # inline script) does not block it
        page.evaluate(script.read_text() + "\n;true")
    results = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    return [
        f"{v['id']} ({v['impact']}): {node['target']} {v['help']}"
        for v in results["violations"]
        if v["impact"] in impacts
        for node in v["nodes"]
    ]
