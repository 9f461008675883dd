"""Every HTML page in Chromium: axe-core finds no serious or critical violation, nothing
overflows sideways at 390 px, unknown URLs get the HTML 404 page (JSON under /api/), the
favicon is served, and /docs renders Swagger UI with no request leaving the server.

Pages are found from the app's routes (every GET page without a path parameter), plus pages
that need an object (a task of each form, a job, an edit of one's own submission), so a new
page is checked without being listed here. Runs once, on SQLite: pages do not depend on the
database backend."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.routing import APIRoute

from tests.browser.conftest import axe_violations, log_in
from tests.labeling_support import make_prompt, make_ranking_task

pytestmark = pytest.mark.browser

# GET routes that are not pages a person opens
NOT_PAGES = {
    "/favicon.ico",
    "/docs",
    "/openapi.json",
    "/labeler/next",
    "/labeler/summary",
    "/logout",
}


def _page_paths() -> list[str]:
    from app.main import create_app

    def routes(items: list[Any]) -> list[APIRoute]:
        found: list[APIRoute] = []
        for route in items:
            if isinstance(route, APIRoute):
                found.append(route)
            elif hasattr(route, "original_router"):
                found.extend(routes(route.original_router.routes))
        return found

    return sorted(
        {
            r.path
            for r in routes(create_app().routes)
            if "GET" in r.methods
            and not r.include_in_schema
            and "{" not in r.path
            and r.path not in NOT_PAGES
            and not any(q.field_info.is_required() for q in r.dependant.query_params)  # forms
            and not r.path.endswith(("/live", "/preview", "/summary"))
        }
    )


def test_every_page_passes_axe_and_fits_a_phone(  # type: ignore[no-untyped-def]
    app_env, live_server, page, make_user, artifacts_dir
) -> None:
    if not app_env.startswith("sqlite"):
        pytest.skip("pages do not depend on the database: run once, on SQLite")
    admin = make_user("admin")
    ranking_task, _ = make_ranking_task(make_prompt("Name three rivers.", split="test"), k=5)
    make_prompt("Explain what a river delta is.")
    log_in(page, live_server, admin)
    paths = _page_paths()
    assert {"/labeler", "/admin", "/admin/data", "/labeler/work"} <= set(paths)
    # pages behind an object: a task of each form
    page.goto(f"{live_server}/labeler/next?kind=ranking")
    paths.append(page.url.removeprefix(live_server))
    page.goto(f"{live_server}/labeler/next?kind=demonstration")
    paths.append(page.url.removeprefix(live_server))
    assert f"/labeler/tasks/{ranking_task}" in paths
    paths.append("/no/such/page")

    problems: dict[str, list[str]] = {}
    for path in paths:
        for viewport in ({"width": 1366, "height": 900}, {"width": 390, "height": 844}):
            page.set_viewport_size(viewport)
            response = page.goto(f"{live_server}{path}")
            assert response is not None
            if path != "/no/such/page":
                assert response.status == 200, (path, response.status)
            found = axe_violations(page) if viewport["width"] > 1000 else []
            width = page.evaluate("document.documentElement.scrollWidth")
            if width > viewport["width"]:
                found.append(f"{width} px wide at {viewport['width']}")
            if found:
                problems[path] = problems.get(path, []) + found
    assert problems == {}, "\n".join(f"{p}: {v}" for p, vs in problems.items() for v in vs)
    assert page.dialogs == []


def test_404_page_favicon_and_offline_docs(app_env, live_server, page, make_user) -> None:  # type: ignore[no-untyped-def]
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


def test_data_browser_with_a_filter(app_env, live_server, page, make_user) -> None:  # type: ignore[no-untyped-def]
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


def test_sample_preview_released_into_tasks(app_env, live_server, page, make_user) -> None:  # type: ignore[no-untyped-def]
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
