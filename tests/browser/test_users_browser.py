"""An admin manages users in a real browser: creates a labeler (one-time password shown once),
the labeler must choose a password first, the admin makes a token (shown once), holds the
labeler out and deactivates them (their open session ends), then reactivates them, changes
their role, resets their password and revokes the token. The pages raise no
Content-Security-Policy violation, and /docs renders offline."""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser.conftest import log_in

pytestmark = pytest.mark.browser


def csp_violations(page: Any) -> list[str]:
    """Collects the console's Content-Security-Policy reports of ``page`` from now on."""
    seen: list[str] = []
    page.on(
        "console",
        lambda msg: seen.append(msg.text) if "Content Security Policy" in msg.text else None,
    )
    return seen


def test_admin_manages_a_user_in_the_browser(
    app_env: str, live_server: str, page: Any, _browser: Any, make_user
) -> None:
    if app_env.startswith("postgresql"):
        pytest.skip("the page flow does not depend on the backend; tests/unit cover both")
    admin_violations = csp_violations(page)
    log_in(page, live_server, make_user("admin"))
    page.click("nav >> text=Users")
    page.wait_for_url(f"{live_server}/admin/users")

    page.fill('#create-user input[name="username"]', "casey")
    page.select_option('#create-user select[name="role"]', "labeler")
    page.click("#create-user button[type=submit]")
    password = page.inner_text("#one-time-secret code.secret").strip()
    assert len(password) >= 12
    assert page.locator("#users >> text=casey").count() == 1

    # casey signs in with it in another browser and must choose a password first
    casey_context = _browser.new_context()
    casey = casey_context.new_page()
    casey_violations = csp_violations(casey)
    casey.goto(f"{live_server}/login")
    casey.fill('input[name="username"]', "casey")
    casey.fill('input[name="password"]', password)
    casey.click('button[type="submit"]')
    casey.wait_for_url(f"{live_server}/account/password")
    casey.goto(f"{live_server}/labeler")
    assert casey.url == f"{live_server}/account/password"
    casey.fill('input[name="current_password"]', password)
    casey.fill('input[name="new_password"]', "caseys own passphrase")
    casey.click('main button[type="submit"]')
    casey.wait_for_url(f"{live_server}/labeler")

    # the admin sees casey's session, makes an ingest token (shown once), holds casey out
    page.click("#users >> text=casey")
    page.wait_for_selector("#sessions")
    casey_page = page.url
    page.fill('#create-token input[name="name"]', "customer A ingest")
    page.select_option('#create-token select[name="scope"]', "ingest")
    page.click("#create-token button[type=submit]")
    secret = page.inner_text("#one-time-secret code.secret").strip()
    assert secret.startswith("pfl_")
    page.goto(casey_page)  # opened again, the secret is gone
    assert secret not in page.content()
    page.click("text=Hold out (no training data)")
    page.wait_for_selector("text=Include in training data")

    # deactivating ends casey's open session at once
    page.click("button:has-text('Deactivate')")
    page.wait_for_selector("text=Reactivate")
    casey.goto(f"{live_server}/labeler")
    assert "/login" in casey.url
    casey_context.close()

    # back in, made a researcher, a new one-time password, the token revoked
    page.click("button:has-text('Reactivate')")
    page.wait_for_selector("button:has-text('Deactivate')")
    page.select_option('select[name="role"]', "researcher")
    page.click("button:has-text('Change role')")
    page.wait_for_selector("text=researcher · active")
    page.click("button:has-text('Reset password')")
    reset = page.inner_text("#one-time-secret code.secret").strip()
    assert len(reset) >= 12 and reset != password
    assert "password to change" in page.inner_text("main")
    page.goto(casey_page)
    assert reset not in page.content()
    page.click("#tokens button:has-text('Revoke')")
    page.wait_for_selector("#tokens .badge:text('revoked')")
    assert page.locator("#tokens button:has-text('Revoke')").count() == 0
    assert not admin_violations and not casey_violations


def test_api_docs_render_offline_without_csp_violations(
    app_env: str, live_server: str, page: Any, make_user
) -> None:
    if app_env.startswith("postgresql"):
        pytest.skip("static page; once is enough")
    violations = csp_violations(page)
    outside: list[str] = []
    page.on(
        "request",
        lambda request: (
            outside.append(request.url) if not request.url.startswith(live_server) else None
        ),
    )
    log_in(page, live_server, make_user("labeler"))
    page.goto(f"{live_server}/docs")
    page.wait_for_selector(".swagger-ui .info .title", timeout=30_000)
    assert "prefloop" in page.inner_text(".swagger-ui .info .title")
    page.get_by_text("/api/v1/prompts", exact=True).first.wait_for()
    assert not outside, outside
    assert not violations, violations
