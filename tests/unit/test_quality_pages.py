"""The quality admin pages through the test client: the labeler table (sorted, outliers), one
labeler's record and decision, the settings form, and turning a ranking task into gold."""

from __future__ import annotations

import re

import pytest

from tests.conftest import csrf_from, login
from tests.quality_support import as_shown, by_ids, ranking_task, work

# the pages read the same services as the API, whose tests run on both databases
pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


def test_labeler_table_sorts_flags_outliers_and_drills_down(client, make_user, api_as) -> None:
    careful, also_careful, lazy = api_as("labeler"), api_as("labeler"), api_as("labeler")
    tasks = [ranking_task(4, overlap=3) for _ in range(10)]
    for _, ids in tasks:
        for labeler in (careful, also_careful):
            work(labeler, by_ids(ids, likert={cid: 7 - n for n, cid in enumerate(ids)}))
        work(lazy, as_shown)
    researcher = make_user("researcher")
    login(client, researcher)
    page = client.get("/admin/quality")
    assert page.status_code == 200
    rows = re.findall(r'<tr data-labeler="([^"]+)"( class="outlier-row")?', page.text)
    assert (lazy.user.username, ' class="outlier-row"') in rows
    assert (careful.user.username, "") in rows
    # ten untouched rankings with the first shown always best: both figures flagged
    lazy_row = page.text.split(f'data-labeler="{lazy.user.username}"')[1].split("</tr>")[0]
    assert 'data-figure="untouched_rate"' in lazy_row and "100.0%" in lazy_row
    assert "submitted as shown" in lazy_row
    by_bias = client.get("/admin/quality?sort=position_bias&desc=true&period=all").text
    order = re.findall(r'<tr data-labeler="([^"]+)"', by_bias)
    assert order.index(lazy.user.username) < order.index(careful.user.username)
    assert 'aria-sort="descending"' in by_bias

    record = client.get(f"/admin/labelers/{lazy.user.id}")
    assert record.status_code == 200 and "untouched" in record.text
    assert client.get("/admin/labelers/999999").status_code == 404


def test_screening_decision_and_group_from_the_labeler_page(client, make_user) -> None:
    from app.db import get_sessionmaker
    from app.models import User

    candidate = make_user("labeler")
    with get_sessionmaker()() as s:
        s.get_one(User, candidate.id).labeler_status = "screening"
        s.commit()
    login(client, make_user("researcher"))
    screening = client.get("/admin/screening")
    assert f'data-labeler="{candidate.username}"' in screening.text
    assert "receive nothing until you" in screening.text  # no screening set yet
    page = client.get(f"/admin/labelers/{candidate.id}")
    token = csrf_from(page.text)
    action = f"/admin/labelers/{candidate.id}/decision"
    r = client.post(action, data={"csrf_token": token, "action": "held_out"})
    assert r.status_code == 409 and "approve them first" in r.text
    r = client.post(
        action, data={"csrf_token": token, "action": "approve", "note": "fine", "held_out": "on"}
    )
    assert r.status_code == 200 and "held-out group" in r.text and "fine" in r.text
    assert f'data-labeler="{candidate.username}"' not in client.get("/admin/screening").text
    r = client.post(action, data={"csrf_token": token, "action": "training"})
    assert "training group" in r.text
    with get_sessionmaker()() as s:
        user = s.get_one(User, candidate.id)
        assert (user.labeler_status, user.held_out) == ("approved", False)


def test_settings_form_keeps_input_on_errors(client, make_user) -> None:
    login(client, make_user("researcher"))
    page = client.get("/admin/quality")
    token = csrf_from(page.text)
    form = {
        "csrf_token": token,
        "agreement_share": "0.25",
        "agreement_overlap": "1",
        "adaptive_agreement_min": "0.6",
        "adaptive_overlap_max": "4",
    }
    r = client.post("/admin/quality/settings", data=form)
    assert r.status_code == 422 and 'aria-invalid="true"' in r.text
    assert 'value="0.25"' in r.text  # what they typed is still there
    r = client.post("/admin/quality/settings", data=form | {"agreement_overlap": "3"})
    assert r.status_code == 200 and "saved here" in r.text
    settings = client.get("/api/v1/quality/settings").json()
    assert (settings["agreement_share"], settings["agreement_overlap"]) == (0.25, 3)
    r = client.post("/admin/quality/settings", data={"csrf_token": token, "reset": "1"})
    assert client.get("/api/v1/quality/settings").json()["overridden"] == []


def test_make_gold_from_the_admin_page(client, make_user, api_as) -> None:
    task_id, ids = ranking_task(4)
    login(client, make_user("researcher"))
    gold_page = client.get("/admin/gold")
    assert f'href="/admin/gold/tasks/{task_id}"' in gold_page.text
    page = client.get(f"/admin/gold/tasks/{task_id}")
    token = csrf_from(page.text)
    places = {f"place_{cid}": str(n) for n, cid in enumerate(ids, start=1)}
    r = client.post(
        f"/admin/gold/tasks/{task_id}",
        data={"csrf_token": token, **places, f"place_{ids[0]}": ""},
    )
    assert r.status_code == 422 and "give every output a place" in r.text
    data = {"csrf_token": token, **places, f"place_{ids[3]}": "3", "screening": "on"}
    data[f"flags_{ids[1]}"] = "hallucination"
    r = client.post(f"/admin/gold/tasks/{task_id}", data=data)
    assert r.status_code == 200 and f"#{task_id}" in r.text
    listed = client.get("/api/v1/gold-tasks").json()
    assert [(g["task_id"], g["screening"]) for g in listed] == [(task_id, True)]
    from app.db import get_sessionmaker
    from app.models import Task

    with get_sessionmaker()() as s:
        reference = s.get_one(Task, task_id).reference
    assert reference == {
        "ranking": [[ids[0]], [ids[1]], [ids[2], ids[3]]],
        "flags": {str(ids[1]): ["hallucination"]},
    }
    r = client.post(
        "/admin/gold/demonstrations",
        data={"csrf_token": token, "prompt_id": "abc", "reference_text": "kept"},
    )
    assert r.status_code == 422 and ">kept</textarea>" in r.text
    labeler = api_as("labeler")
    assert labeler.get("/admin/quality").status_code == 403
