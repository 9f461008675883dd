"""In the browser: a researcher creates an evaluation from the form, a held-out labeler judges
it on the ranking page, and the evaluation page shows the win-rate chart."""

from __future__ import annotations

import json

import pytest

from tests.browser.conftest import log_in
from tests.labeling_support import make_prompt

pytestmark = pytest.mark.browser


def test_researcher_creates_labeler_judges_page_shows_chart(
    live_server, browser_page, make_user, artifacts_dir
) -> None:
    page = browser_page
    prompts = [make_prompt(f"Name a colour of the sea number {i}.", split="test") for i in range(2)]
    researcher = make_user("researcher")
    judge = make_user("labeler", held_out=True)

    log_in(page, live_server, researcher)
    page.goto(f"{live_server}/admin/evaluations")
    page.fill('input[name="name"]', "sea colours")
    page.fill('input[name="upload_0_name"]', "plain")
    page.fill(
        'textarea[name="upload_0_outputs"]',
        "\n".join(json.dumps({"prompt_id": p, "text": "Blue."}) for p in prompts),
    )
    page.fill('input[name="upload_1_name"]', "rich")
    page.fill(
        'textarea[name="upload_1_outputs"]',
        "\n".join(json.dumps({"prompt_id": p, "text": "Deep teal, like glass."}) for p in prompts),
    )
    page.fill('input[name="prompt_count"]', "")
    page.select_option('select[name="baseline"]', "upload:0")
    page.select_option('select[name="judges"]', "held_out")
    page.click("text=Create evaluation")
    page.wait_for_url("**/admin/evaluations/*")
    assert page.inner_text("#evaluation-status") == "judging"
    evaluation_url = page.url

    judging = page.context.browser.new_context()
    labeler_page = judging.new_page()
    log_in(labeler_page, live_server, judge)
    for _ in prompts:
        labeler_page.goto(f"{live_server}/labeler/next?kind=evaluation")
        cards = labeler_page.locator(".rank-card")
        assert cards.count() == 2
        ids = [cards.nth(i).get_attribute("data-cid") for i in range(2)]
        texts = {cid: labeler_page.inner_text(f'.rank-card[data-cid="{cid}"]') for cid in ids}
        rich = next(cid for cid in ids if "teal" in texts[cid])
        plain = next(cid for cid in ids if cid != rich)
        if ids[0] != rich:  # put the rich answer first
            labeler_page.click(f'.rank-card[data-cid="{rich}"] [data-move="up"]')
        labeler_page.check(f'input[name="likert_{rich}"][value="6"]')
        labeler_page.check(f'input[name="likert_{plain}"][value="3"]')
        labeler_page.click("#submit-task")
        labeler_page.wait_for_selector("#saved-notice")
    judging.close()

    page.goto(evaluation_url)
    assert page.inner_text("#evaluation-status") == "done"
    chart = page.locator("#win-rates svg")
    assert chart.is_visible()
    assert page.locator("#win-rates .half-line").count() == 1
    assert page.locator("#win-rates .whisker").count() == 1
    assert "rich" in page.inner_text("#win-rates")
    assert "100.0%" in page.inner_text("#win-rates table")
    page.screenshot(path=str(artifacts_dir / "evaluation-page.png"), full_page=True)
    page.goto(f"{live_server}/admin/leaderboard")
    assert page.locator("#leaderboard tbody tr").first.inner_text().startswith("1\trich")
