"""Admin and system pages in Chromium: unknown URLs get the HTML 404 page (JSON under /api/),
the favicon is served, /docs renders Swagger UI with no request leaving the server, the data
browser filters and opens a prompt, and a sample job's held tasks are previewed and released.
(axe-core and the phone width on every page: tests/browser/test_every_page_browser.py.)
Runs once, on SQLite: pages do not depend on the database backend."""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser.conftest import log_in
from tests.labeling_support import make_prompt

pytestmark = pytest.mark.browser


def test_404_page_favicon_and_offline_docs(app_env, live_server, page, make_user) -> None:
    import httpx

    if not app_env.startswith("sqlite"):
        pytest.skip("no database involved: run once, on SQLite")
    response = page.goto(f"{live_server}/no/such/page")
    assert response is not None and response.status == 404
    assert "Page not found" in page.inner_text("h1") and "/no/such/page" in page.inner_text("main")
    api = httpx.get(f"{live_server}/api/v1/no-such-thing")
    assert api.status_code == 404 and api.json() == {"detail": "Not Found"}
    icon = httpx.get(f"{live_server}/favicon.ico")
    assert icon.status_code == 200 and icon.headers["content-type"].startswith("image/svg+xml")

    outside: list[str] = []

    def only_this_server(route: Any) -> None:
        if route.request.url.startswith(live_server):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    log_in(page, live_server, make_user("researcher"))  # the docs are for signed-in users
    page.route("**/*", only_this_server)
    page.goto(f"{live_server}/docs")
    page.wait_for_selector(".swagger-ui .info .title")
    assert "prefloop" in page.inner_text(".swagger-ui .info .title")
    page.wait_for_selector(".opblock-tag-section")  # the operations, grouped by tag
    assert page.locator(".opblock").count() > 10
    assert outside == []


def test_data_browser_with_a_filter(app_env, live_server, page, make_user) -> None:
    if not app_env.startswith("sqlite"):
        pytest.skip("the queries are tested on both backends in tests/unit/test_admin_pages.py")
    make_prompt("How do tides work?", split="train")
    make_prompt("What is a neap tide?", split="test")
    log_in(page, live_server, make_user("researcher"))
    page.click("nav >> text=Browse")
    page.wait_for_selector("#browse-table")
    assert "2 prompts" in page.inner_text("#browse-total")
    page.select_option('select[name="split"]', "test")
    page.click("#browse-filters button[type=submit]")
    page.wait_for_url("**split=test**")
    assert "1 prompts" in page.inner_text("#browse-total")
    assert "neap tide" in page.inner_text("#browse-table") and "How do" not in page.inner_text(
        "#browse-table"
    )
    href = page.get_attribute("#export-link", "href")
    assert href == "/api/v1/export/prompts?split=test"
    page.click("#browse-table a")  # the prompt's detail page
    page.wait_for_selector('[data-testid="prompt-text"]')
    assert "neap tide" in page.inner_text('[data-testid="prompt-text"]')


def test_sample_preview_released_into_tasks(app_env, live_server, page, make_user) -> None:
    from tests.unit.test_sampled_tasks import sample_job_with_tasks

    if not app_env.startswith("sqlite"):
        pytest.skip("release is tested on both backends in tests/unit/test_sampled_tasks.py")
    researcher = make_user("researcher")
    job_id, prompt_ids = sample_job_with_tasks(researcher.id)
    log_in(page, live_server, researcher)
    page.goto(f"{live_server}/admin/jobs/{job_id}")
    assert "2 held" in page.inner_text("#sampled-counts")
    assert f"Output 0 for prompt {prompt_ids[0]}." in page.inner_text("#sample-preview")
    page.click("#release-tasks")  # asks first; "Cancel" keeps them held
    assert page.dialogs and "Release 2 ranking tasks" in page.dialogs[-1]
    assert "2 held" in page.inner_text("#sampled-counts")
    page.accept_dialogs = True
    page.click("#release-tasks")
    page.wait_for_selector("#released-notice")
    assert "2 open" in page.inner_text("#sampled-counts")
    assert not page.is_visible("#release-tasks")
    # a labeler now gets one of them
    labeler = make_user("labeler")
    page.context.clear_cookies()
    log_in(page, live_server, labeler)
    page.goto(f"{live_server}/labeler/next?kind=ranking")
    assert "/labeler/tasks/" in page.url
    assert "Output 0 for prompt" in page.inner_text("#rank-list")
