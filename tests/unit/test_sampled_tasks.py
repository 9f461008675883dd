"""A sample job's tasks: unusable outputs filtered, held until released (or discarded) through
the API and the job page, never served while held."""

from __future__ import annotations

import re

import pytest

from app.db import get_sessionmaker
from app.services.sampled_tasks import unusable_reason
from tests.conftest import csrf_from, login
from tests.labeling_support import make_prompt


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        (" \n\t ", "empty"),
        ("\x00\x01\x02\x03\x04 ok", "mostly non-printable"),
        ("\ufffd\ufffd\ufffd\ufffdab", "mostly non-printable"),
        ("\u200b" * 10 + "hi", "mostly non-printable"),  # format characters
        ("A fine answer.\nWith two lines.\tAnd a tab.", None),
        ("Ünïcödé, 日本語 and emoji 🙂 are printable", None),
        ("mostly fine \x07", None),
    ],
)
def test_unusable_outputs(text: str, reason: str | None) -> None:
    assert unusable_reason(text) == reason


def sample_job_with_tasks(
    researcher_id: int, prompts: int = 2, k: int = 4
) -> tuple[int, list[int]]:
    """A succeeded sample job whose held ranking tasks were made by the runner's service."""
    from app.models import Job, User
    from app.services.sampled_tasks import create_sampled_tasks

    prompt_ids = [
        make_prompt(f"Describe a colour, number {i}.", split="train") for i in range(prompts)
    ]
    with get_sessionmaker()() as s:
        job = Job(kind="sample", params={"k": k}, status="succeeded", created_by_id=researcher_id)
        s.add(job)
        s.flush()
        outputs = {
            pid: [{"text": f"Output {j} for prompt {pid}.", "origin": "test"} for j in range(k)]
            for pid in prompt_ids
        }
        create_sampled_tasks(
            s, job, outputs, overlap=1, hold=True, creator=s.get(User, researcher_id)
        )
        s.commit()
        return job.id, prompt_ids


def test_held_tasks_wait_for_release_through_the_api(api_as, make_user) -> None:
    researcher = make_user("researcher")
    api = api_as(user=researcher)
    labeler = api_as("labeler")
    job_id, _ = sample_job_with_tasks(researcher.id)
    assert labeler.get("/api/v1/tasks/next?kind=ranking").status_code == 204  # held: unseen
    r = api.post(f"/api/v1/jobs/{job_id}/release")
    assert r.status_code == 200 and r.json() == {"job_id": job_id, "tasks": 2}
    assert labeler.get("/api/v1/tasks/next?kind=ranking").status_code == 200
    again = api.post(f"/api/v1/jobs/{job_id}/release")
    assert again.status_code == 409 and again.json()["field"] == "job_id"
    assert api.post(f"/api/v1/jobs/{job_id}/discard").status_code == 409
    assert api.post("/api/v1/jobs/2147483647/release").status_code == 404
    assert labeler.post(f"/api/v1/jobs/{job_id}/release").status_code == 403


def test_job_page_previews_and_discards(client, make_user, api_as) -> None:
    researcher = make_user("researcher")
    job_id, prompt_ids = sample_job_with_tasks(researcher.id)
    login(client, researcher)
    page = client.get(f"/admin/jobs/{job_id}")
    assert page.status_code == 200 and 'id="sampled-tasks"' in page.text
    assert "2 tasks:" in page.text and "2 held" in page.text
    assert f"Output 3 for prompt {prompt_ids[0]}." in page.text  # the preview
    assert 'id="release-tasks"' in page.text and "data-confirm=" in page.text
    r = client.post(f"/admin/jobs/{job_id}/discard", data={"csrf_token": csrf_from(page.text)})
    assert r.status_code == 200 and "Discarded 2 ranking tasks" in r.text
    assert "2 closed" in r.text and 'id="release-tasks"' not in r.text
    assert api_as("labeler").get("/api/v1/tasks/next?kind=ranking").status_code == 204
    assert re.search(r"Task \d+ · closed", r.text)
