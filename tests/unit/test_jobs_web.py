"""The admin job pages without a worker: the launch form (valid choices, defaults, errors
inline with the input kept), the job page with server-drawn plots, models, the admin home."""

from __future__ import annotations

import re

import pytest

from app.db import get_sessionmaker, utcnow
from app.models import Job, JobMetric, ModelVersion
from tests.conftest import csrf_from, login


@pytest.fixture
def browser(client, make_user):
    return login(client, make_user("researcher"))


def _versions() -> dict[str, int]:
    with get_sessionmaker()() as s:
        base = ModelVersion(kind="base", name="tiny", path="tiny", parent_ids=[])
        s.add(base)
        s.flush()
        sft = ModelVersion(kind="sft", name="sft-1", path="/tmp/x", parent_ids=[base.id])
        s.add(sft)
        s.flush()
        rm = ModelVersion(kind="rm", name="rm-2", path="/tmp/y", parent_ids=[sft.id])
        s.add(rm)
        s.commit()
        return {"base": base.id, "sft": sft.id, "rm": rm.id}


def _first(pattern: str, text: str) -> str:
    """The first match of ``pattern`` across lines; the test fails when there is none."""
    found = re.search(pattern, text, re.S)
    assert found is not None, pattern
    return found.group(0)


@pytest.mark.parametrize("kind", ["sft", "rm", "ppo", "sample", "export-snapshot"])
def test_every_kind_has_a_form(browser, kind) -> None:
    page = browser.get(f"/admin/jobs/new?kind={kind}")
    assert page.status_code == 200 and 'id="launch-form"' in page.text


def test_form_offers_valid_choices_and_shows_which_defaults_apply(browser) -> None:
    ids = _versions()
    page = browser.get("/admin/jobs/new?kind=ppo").text
    sft_select = _first(r'name="sft_model_version_id".*?</select>', page)
    rm_select = _first(r'name="rm_model_version_id".*?</select>', page)
    assert f'value="{ids["sft"]}"' in sft_select and f'value="{ids["rm"]}"' not in sft_select
    assert f'value="{ids["rm"]}"' in rm_select and f'value="{ids["sft"]}"' not in rm_select
    # empty: the model's defaults apply; the method's and the tiny preset's are shown
    assert 'name="kl_coef" step="any" value="" placeholder="0.02 · tiny: 0.05"' in page
    assert 'name="ptx_coef" step="any" value="" placeholder="0"' in page
    assert "the &#39;tiny&#39; preset and models trained from it use" in page


def test_form_labels_help_and_defaults_come_from_the_schema(browser) -> None:
    """Human labels and help from the params schema's titles and descriptions, the registered
    base model chosen, use cases from the list, and only the fields the kind uses."""
    from app.schemas.jobs import SFTParams
    from app.services.use_cases import ensure_default_use_cases

    ids = _versions()
    with get_sessionmaker()() as s:
        ensure_default_use_cases(s)
        s.commit()
    sft = browser.get("/admin/jobs/new?kind=sft").text
    lr = SFTParams.model_fields["lr"]
    assert f"<span>{lr.title}</span>" in sft and lr.description in sft
    assert "<span>lr</span>" not in sft and "<span>Learning rate</span>" in sft
    base = _first(r'name="base_model".*?</select>', sft)
    assert f'<option value="{ids["base"]}" selected>' in base  # tiny, not "type a name"
    assert "type a name" not in sft
    use_case = _first(r'name="filters.use_case".*?</select>', sft)
    assert '<option value="Generation"' in use_case  # a list, not free text
    sample = browser.get("/admin/jobs/new?kind=sample").text
    assert 'name="use_lora"' not in sample and 'name="lora_r"' not in sample
    assert 'name="gradient_accumulation_steps"' not in sample
    assert 'name="temperature"' in sample and 'name="use_lora"' in sft


def test_bad_input_is_shown_inline_and_kept(browser) -> None:
    ids = _versions()
    page = browser.get("/admin/jobs/new?kind=sample")
    r = browser.post(
        "/admin/jobs/new?kind=sample",
        data={
            "csrf_token": csrf_from(page.text),
            "model_version_ids": [str(ids["sft"])],
            "k": "12",
            "prompt_count": "7",
        },
    )
    assert r.status_code == 422
    assert 'class="field-error"' in r.text and "less than or equal to 9" in r.text
    assert 'name="prompt_count" step="1" value="7"' in r.text  # the input is kept
    with get_sessionmaker()() as s:
        assert s.query(Job).count() == 0


def test_launch_from_the_form_then_the_job_page_plots_its_metrics(browser) -> None:
    page = browser.get("/admin/jobs/new?kind=sft")
    r = browser.post(
        "/admin/jobs/new?kind=sft",
        data={"csrf_token": csrf_from(page.text), "base_model_name": "tiny", "epochs": "3"},
        follow_redirects=False,
    )
    assert r.status_code == 303
    job_id = int(r.headers["location"].rsplit("/", 1)[1])
    with get_sessionmaker()() as s:
        job = s.get_one(Job, job_id)
        assert job.params["epochs"] == 3 and job.params["base_model"] == "tiny"
        job.status, job.started_at, job.heartbeat_at = "running", utcnow(), utcnow()
        job.progress_step, job.progress_total = 3, 10
        s.add_all(JobMetric(job_id=job_id, step=i, name="loss", value=5.0 - i) for i in range(1, 4))
        s.commit()
    live = browser.get(f"/admin/jobs/{job_id}/live", headers={"HX-Request": "true"}).text
    assert 'hx-trigger="every 1s"' in live  # keeps polling while running
    assert f'data-confirm="Cancel job {job_id}?' in live  # cancelling asks first
    assert re.search(r'data-metric="loss".*?<polyline[^>]+points="[\d., ]+"', live, re.S)
    assert 'value="3"' in live and "step 3 of 10" in live
    with get_sessionmaker()() as s:
        s.get_one(Job, job_id).status = "succeeded"
        s.commit()
    done = browser.get(f"/admin/jobs/{job_id}").text
    assert "every 1s" not in done  # polling stops when the job ends


def test_models_page_marks_the_current_policy(browser) -> None:
    ids = _versions()
    page = browser.get("/admin/models")
    assert f'action="/admin/models/{ids["rm"]}/current"' not in page.text  # an RM is no policy
    r = browser.post(
        f"/admin/models/{ids['sft']}/current",
        data={"csrf_token": csrf_from(page.text)},
        follow_redirects=False,
    )
    assert r.status_code == 303
    with get_sessionmaker()() as s:
        assert s.get_one(ModelVersion, ids["sft"]).is_current


def test_admin_home_suggests_the_next_step(browser) -> None:
    home = browser.get("/admin")
    assert 'hx-get="/admin/overview"' in home.text
    panel = browser.get("/admin/overview", headers={"HX-Request": "true"})
    assert panel.status_code == 200 and "<html" not in panel.text
    assert "Collect prompts" in panel.text and "No worker has reported" in panel.text


def test_job_list_refreshes_while_a_job_is_active(browser) -> None:
    assert "every 3s" not in browser.get("/admin/jobs").text
    with get_sessionmaker()() as s:
        s.add(Job(kind="sft", params={"base_model": "tiny"}, status="queued"))
        s.commit()
    page = browser.get("/admin/jobs").text
    assert "every 3s" in page and "queued" in page
