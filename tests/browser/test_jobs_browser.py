"""A researcher in a real browser launches an SFT job from the form and watches its progress
and the server-drawn loss plot update live (htmx polling) until it succeeds."""

from __future__ import annotations

import re
import threading
from typing import Any

import pytest

from tests.browser.conftest import log_in
from tests.labeling_support import make_prompt

pytestmark = pytest.mark.browser


def _demonstrations(labeler_id: int, count: int) -> None:
    from app.db import get_sessionmaker
    from app.models import User
    from app.services.demo import _add_demonstration

    prompt_ids = [make_prompt(f"Describe colour number {i} in a sentence.") for i in range(count)]
    with get_sessionmaker()() as s:
        labeler = s.get_one(User, labeler_id)
        for i, prompt_id in enumerate(prompt_ids):
            _add_demonstration(s, prompt_id, labeler, f"Colour {i} is bright and calm.")
        s.commit()


def test_researcher_launches_a_job_and_sees_progress_and_plot(
    app_env: str, live_server: str, page: Any, make_user, artifacts_dir, monkeypatch
) -> None:
    from app.worker.reporting import JobReporter
    from app.worker.tasks import run_job

    if app_env.startswith("postgresql"):
        # the page and the job code do not depend on the backend (the integration tests run
        # jobs on both); one training run in a browser is enough for the suite's time budget
        pytest.skip("the browser job flow runs once, on SQLite")

    # hold the job at step 3 until the page has shown it running, however fast the machine
    page_saw_progress = threading.Event()
    report = JobReporter.__call__

    def paced(self: JobReporter, progress: Any) -> None:
        report(self, progress)
        if progress.step == 3 and not page_saw_progress.is_set():
            self.flush()
            page_saw_progress.wait(timeout=120)

    monkeypatch.setattr(JobReporter, "__call__", paced)

    _demonstrations(make_user("labeler").id, 8)
    log_in(page, live_server, make_user("researcher"))
    page.goto(f"{live_server}/admin")
    page.click("text=Launch a job")
    page.wait_for_selector("#launch-form")
    page.fill('input[name="base_model_name"]', "tiny")
    page.click("summary")  # open the hyper-parameters
    for name, value in {"epochs": "5", "batch_size": "4", "max_length": "64",
                        "residual_dropout": "0", "val_samples": "0"}.items():  # fmt: skip
        page.fill(f'input[name="{name}"]', value)
    page.click("button:has-text('Launch')")
    page.wait_for_url(re.compile(r"/admin/jobs/\d+$"))
    job_id = int(page.url.rsplit("/", 1)[1])
    assert page.inner_text("#job-state") == "queued"

    # the worker's task, in a thread of this process (the broker is covered by the
    # integration tests); the page must pick up its progress by itself (htmx polling)
    worker = threading.Thread(target=run_job.apply, args=([job_id],), daemon=True)
    worker.start()
    try:
        page.wait_for_function(
            "() => document.querySelector('#job-state').textContent === 'running' "
            "&& Number(document.querySelector('#job-progress').value) >= 3",
            timeout=120_000,
        )
        assert "step 3 of 10" in page.inner_text("#job-progress-text")
        live_loss = page.locator('figure[data-metric="loss"] polyline').get_attribute("points")
        assert live_loss is not None and len(live_loss.split()) == 3  # plotted while running
    finally:
        page_saw_progress.set()
    page.wait_for_selector('#job-state:text("succeeded")', timeout=240_000)
    worker.join(timeout=60)
    points = page.locator('figure[data-metric="loss"] polyline').get_attribute("points")
    assert points is not None and len(points.split()) == 10
    assert "Model version" in page.inner_text("#job-status")
    page.screenshot(path=str(artifacts_dir / "job-page.png"), full_page=True)
    assert page.dialogs == []
