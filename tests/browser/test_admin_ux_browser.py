"""Researcher pages in Chromium: job charts that plot what matters first with readable axes at
desktop and phone width, cancel and discard that ask first, and the instructions editor that
warns before unsaved changes are lost. Runs once, on SQLite: the pages do not depend on the
database backend."""

from __future__ import annotations

import pytest

from tests.browser.conftest import log_in
from tests.browser.test_every_page_browser import DESKTOP, PHONE, rm_and_ppo_jobs

pytestmark = pytest.mark.browser

CHARTS = """() => [...document.querySelectorAll('#job-metrics figure.chart')].map(f => {
  const svg = f.querySelector('svg');
  const scale = svg.getBoundingClientRect().width / svg.viewBox.baseVal.width;
  const ticks = [...svg.querySelectorAll('text.tick')];
  const y = ticks.filter(t => t.getAttribute('text-anchor') === 'end' && t.textContent !== 'step');
  return {
    name: f.dataset.metric,
    folded: !!f.closest('details:not([open])'),
    yLabels: y.map(t => t.textContent),
    fontPx: Math.min(...ticks.map(t => parseFloat(getComputedStyle(t).fontSize) * scale)),
  };
})"""


def _sqlite_only(app_env: str) -> None:
    if not app_env.startswith("sqlite"):
        pytest.skip("the pages do not depend on the database: run once, on SQLite")


def _job_status(job_id: int) -> tuple[str, bool]:
    from app.db import get_sessionmaker
    from app.models import Job

    with get_sessionmaker()() as s:
        job = s.get_one(Job, job_id)
        return job.status, job.cancel_requested


def test_job_charts_plot_what_matters_first_with_readable_axes(
    app_env, live_server, page, make_user
) -> None:
    _sqlite_only(app_env)
    researcher = make_user("researcher")
    rm, ppo = rm_and_ppo_jobs(researcher.id)
    log_in(page, live_server, researcher)
    for viewport in (DESKTOP, PHONE):
        page.set_viewport_size(viewport)
        page.goto(f"{live_server}/admin/jobs/{rm}")
        charts = page.evaluate(CHARTS)
        shown = [c["name"] for c in charts if not c["folded"]]
        assert shown == ["loss", "accuracy", "val_accuracy"], shown  # not the constants
        assert [c["name"] for c in charts if c["folded"]] == ["train_seconds"]
        page.goto(f"{live_server}/admin/jobs/{ppo}")
        ppo_charts = page.evaluate(CHARTS)
        shown = [c["name"] for c in ppo_charts if not c["folded"]]
        assert shown[:3] == ["reward", "kl", "entropy"], shown
        folded = {c["name"] for c in ppo_charts if c["folded"]}
        assert folded == {"time_generation", "time_training", "time_rewards"}
        for c in charts + ppo_charts:
            assert len(c["yLabels"]) >= 3 and len(set(c["yLabels"])) == len(c["yLabels"]), c
        smallest = min(c["fontPx"] for c in charts + ppo_charts)
        print(f"smallest axis text at {viewport['width']} px wide: {smallest:.1f} px")
        assert smallest >= 11
        page.click("#job-metrics details.chart-group summary")  # the timings unfold
        assert page.locator('figure[data-metric="time_generation"]').is_visible()
        assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"]
    assert page.dialogs == []


def test_cancel_and_discard_ask_first(app_env, live_server, page, make_user) -> None:
    from app.db import get_sessionmaker
    from app.models import Job
    from tests.unit.test_sampled_tasks import sample_job_with_tasks

    _sqlite_only(app_env)
    researcher = make_user("researcher")
    with get_sessionmaker()() as s:
        job = Job(kind="sft", params={}, status="queued", created_by_id=researcher.id)
        s.add(job)
        s.commit()
        queued = job.id
    log_in(page, live_server, researcher)
    page.goto(f"{live_server}/admin/jobs/{queued}")
    page.click("#cancel-job")  # answered "Cancel": nothing happens
    assert page.dialogs == [f"Cancel job {queued}? A running job stops at its next step."]
    assert _job_status(queued) == ("queued", False)
    page.accept_dialogs = True
    page.click("#cancel-job")
    page.wait_for_selector('#job-state:text("cancelled")')
    assert _job_status(queued) == ("cancelled", True)

    sample, _ = sample_job_with_tasks(researcher.id)
    page.accept_dialogs = False
    page.goto(f"{live_server}/admin/jobs/{sample}")
    page.click("#discard-tasks")
    assert "Discard 2 ranking tasks?" in page.dialogs[-1]
    assert "2 held" in page.inner_text("#sampled-counts")
    page.accept_dialogs = True
    page.click("#discard-tasks")
    page.wait_for_selector("#discarded-notice")
    assert "2 closed" in page.inner_text("#sampled-counts")
    assert not page.is_visible("#release-tasks")
    # a labeler gets none of them
    page.context.clear_cookies()
    log_in(page, live_server, make_user("labeler"))
    page.goto(f"{live_server}/labeler/next?kind=ranking")
    assert "/labeler/tasks/" not in page.url


def test_instructions_editor_warns_before_unsaved_changes_are_lost(
    app_env, live_server, page, make_user
) -> None:
    _sqlite_only(app_env)
    kinds: list[str] = []
    page.on("dialog", lambda dialog: kinds.append(dialog.type))
    log_in(page, live_server, make_user("researcher"))
    page.goto(f"{live_server}/admin/instructions")
    page.click("text=View as labelers see it")  # nothing changed: leaves without asking
    page.wait_for_url(f"{live_server}/instructions")
    assert kinds == []
    page.goto(f"{live_server}/admin/instructions")
    page.click("#markdown")
    page.keyboard.press("Control+End")
    page.keyboard.type("\n\nAlways check the prompt's language.")
    page.click("text=View as labelers see it")  # the browser's "Leave site?", answered "Stay"
    page.wait_for_function("() => true")
    assert kinds == ["beforeunload"]
    assert page.url == f"{live_server}/admin/instructions"
    assert "check the prompt's language" in page.input_value("#markdown")
    page.click("#instructions-form button[type=submit]")  # saving is not leaving
    page.wait_for_selector("text=Saved. Labelers see the new version now.")
    page.click("text=View as labelers see it")
    page.wait_for_url(f"{live_server}/instructions")
    assert kinds == ["beforeunload"]
    assert "check the prompt's language" in page.inner_text("main")


def test_launch_form_offers_the_registered_model_and_only_the_kinds_fields(
    app_env, live_server, page, make_user
) -> None:
    from app.db import get_sessionmaker
    from app.schemas.jobs import SFTParams
    from app.services.demo import register_tiny_base
    from app.services.use_cases import ensure_default_use_cases

    _sqlite_only(app_env)
    with get_sessionmaker()() as s:
        register_tiny_base(s)
        ensure_default_use_cases(s)
        s.commit()
    log_in(page, live_server, make_user("researcher"))
    page.goto(f"{live_server}/admin")
    page.click("text=Launch a job")
    page.wait_for_selector("#launch-form")
    base = page.locator('select[name="base_model"]')
    assert "tiny" in base.locator("option:checked").inner_text()  # chosen, not "type a name"
    use_cases = page.locator('select[name="filters.use_case"] option').all_inner_texts()
    assert "Generation" in use_cases
    page.click("#launch-form summary")  # the hyper-parameters, with human labels and help
    lr = SFTParams.model_fields["lr"]
    label = page.locator("#launch-form label", has=page.locator('input[name="lr"]'))
    assert lr.title in label.inner_text() and lr.description in label.inner_text()
    assert page.locator('input[name="use_lora"]').count() == 1
    page.click('#kinds a[href$="kind=sample"]')
    page.wait_for_url("**kind=sample")
    for lora_only in ("use_lora", "lora_r", "gradient_accumulation_steps"):
        assert page.locator(f'[name="{lora_only}"]').count() == 0, lora_only
    assert page.locator('[name="temperature"]').count() == 1
    assert page.evaluate("document.documentElement.scrollWidth") <= page.viewport_size["width"]
