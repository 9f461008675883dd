"""A researcher in a real browser reviews a labeler in screening (their gold ranking beside
the reference), approves them, and reads and sorts the labeler table."""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser.conftest import log_in
from tests.quality_support import as_shown, by_ids, outputs, ranking_task, work

# the pages do not depend on the backend (their API tests run on both): SQLite only
pytestmark = [pytest.mark.browser, pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)]


def test_researcher_approves_a_screened_labeler_and_reads_the_table(
    app_env: str, live_server: str, page: Any, make_user, api_as, artifacts_dir, monkeypatch
) -> None:
    from app.config import get_settings

    researcher = api_as("researcher")
    prompt_id, ids = outputs(4)
    gold = researcher.post(
        "/api/v1/gold-tasks",
        json={
            "prompt_id": prompt_id,
            "completion_ids": ids,
            "reference_ranking": [[i] for i in ids],
            "screening": True,
        },
    )
    assert gold.status_code == 201
    monkeypatch.setenv("PREFLOOP_GOLD_RATE", "0")  # the gold task is for the candidate
    get_settings.cache_clear()
    careful, lazy = api_as("labeler"), api_as("labeler")
    for _ in range(10):
        _, task_ids = ranking_task(4, overlap=2)
        work(careful, by_ids(task_ids))
        work(lazy, as_shown)
    monkeypatch.setenv("PREFLOOP_SCREENING", "true")
    get_settings.cache_clear()
    candidate = api_as("labeler")
    work(candidate, by_ids(ids), kind="ranking")  # their screening task: the reference order

    log_in(page, live_server, make_user("researcher"))
    page.goto(f"{live_server}/admin")
    page.get_by_role("link", name="Labeler quality").click()
    page.get_by_role("link", name="Screening", exact=True).first.click()
    row = page.locator(f'#screening-table tr[data-labeler="{candidate.user.username}"]')
    assert "100.0%" in row.inner_text()  # their ranking agreement with the reference
    row.get_by_role("link", name="Review and decide").click()
    page.wait_for_selector("#decision")
    assert page.locator("#gold-accuracy").inner_text() == "100.0%"
    assert page.locator("#gold-rankings table").count() == 1
    page.fill('input[name="note"]', "Matches the reference")
    page.get_by_role("button", name="Approve").click()
    page.wait_for_selector("h1 .badge:text('approved')")
    assert "Matches the reference" in page.locator("#decision table").inner_text()

    page.get_by_role("link", name="All labelers").click()
    table = page.locator("#labeler-table")
    table.wait_for()
    candidate_row = table.locator(f'tr[data-labeler="{candidate.user.username}"]')
    assert "approved" in candidate_row.inner_text()
    # the careless labeler stands out: flagged, with the reason on hover
    lazy_row = table.locator(f'tr[data-labeler="{lazy.user.username}"]')
    assert lazy_row.get_attribute("class") == "outlier-row"
    assert "first-shown output best" in lazy_row.locator(".flagged").get_attribute("title")
    # sort by position bias, worst first
    page.get_by_role("link", name="Position bias").click()
    page.get_by_role("link", name="Position bias ▲").click()
    names = table.locator("tbody tr").evaluate_all(
        "rows => rows.map(r => r.getAttribute('data-labeler'))"
    )
    assert names[0] == lazy.user.username, names
    page.screenshot(path=str(artifacts_dir / "quality-labeler-table.png"), full_page=True)
    assert page.dialogs == []
