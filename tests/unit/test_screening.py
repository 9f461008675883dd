"""Screening: with PREFLOOP_SCREENING on, new labelers start in screening by every door."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from app.cli import cli


def test_new_labelers_start_in_screening_by_every_door(
    app_env, make_user, api_as, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.config import get_settings
    from app.db import get_sessionmaker
    from app.models import User
    from app.services.accounts import get_user

    before = api_as("labeler")
    me = before.get("/api/v1/me").json()
    assert me["status"] == "approved" and me["user_id"] == before.user.id

    monkeypatch.setenv("PREFLOOP_SCREENING", "true")
    get_settings.cache_clear()
    labeler = api_as("labeler")
    me = labeler.get("/api/v1/me").json()
    assert (me["user_id"], me["role"], me["status"]) == (labeler.user.id, "labeler", "screening")
    # researchers are not screened
    assert api_as("researcher").get("/api/v1/me").json()["status"] == "approved"

    result = CliRunner().invoke(
        cli, ["users", "create", "cli-labeler", "--password-stdin"], input="long enough pw\n"
    )
    assert result.exit_code == 0 and "in screening" in result.output
    with get_sessionmaker()() as s:
        assert get_user(s, "cli-labeler").labeler_status == "screening"
        # turning screening on does not move labelers who already work
        assert s.get_one(User, before.user.id).labeler_status == "approved"


def test_screening_labeler_gets_the_screening_set_until_approved(
    app_env, api_as, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.config import get_settings
    from tests.quality_support import outputs, ranking_task, take, taken, work, worked

    researcher = api_as("researcher")
    regular, _ = ranking_task(4)
    prompt_id, ids = outputs(4)
    reference = [[i] for i in ids]
    body = {"prompt_id": prompt_id, "completion_ids": ids, "reference_ranking": reference}
    screening_gold = researcher.post("/api/v1/gold-tasks", json=body | {"screening": True})
    other_gold = researcher.post("/api/v1/gold-tasks", json=body)
    demo_prompt, _ = outputs(1)
    r = researcher.post(
        "/api/v1/gold-demonstrations",
        json={"prompt_id": demo_prompt, "reference_text": "The reference answer."},
    )
    assert r.status_code == 201, r.text
    gold_demo = r.json()["task_id"]
    bad = researcher.post(
        "/api/v1/gold-demonstrations", json={"prompt_id": demo_prompt, "reference_text": "  "}
    )
    assert bad.status_code == 422 and bad.json()["field"] == "reference_text"

    monkeypatch.setenv("PREFLOOP_SCREENING", "true")
    get_settings.cache_clear()
    candidate, careless = api_as("labeler"), api_as("labeler")
    got = {
        worked(candidate, lambda t: {"ranking": reference, "confirmed_order": True}, kind=None)[
            "task_id"
        ]
        for _ in range(2)
    }
    assert got == {screening_gold.json()["task_id"], gold_demo}
    assert take(candidate, None) is None  # not the regular task, not the other gold task

    record = researcher.get(f"/api/v1/labelers/{candidate.user.id}").json()
    assert record["status"] == "screening"
    assert record["screening"]["gold_accuracy"] == 1.0
    assert record["screening"]["gold_rankings"][0]["accuracy"] == 1.0
    demo = record["screening"]["demonstrations"][0]
    assert (demo["text"], demo["reference_text"]) == ("my demonstration", "The reference answer.")
    assert (
        researcher.put(
            f"/api/v1/labelers/{candidate.user.id}/group", json={"group": "held_out"}
        ).status_code
        == 409
    )

    r = researcher.post(
        f"/api/v1/labelers/{candidate.user.id}/approve", json={"note": "good", "held_out": True}
    )
    assert r.json() == {
        "labeler_id": candidate.user.id,
        "username": candidate.user.username,
        "status": "approved",
        "group": "held_out",
    }
    assert taken(candidate)["task_id"] in (regular, other_gold.json()["task_id"])
    assert candidate.get("/api/v1/me").json()["status"] == "approved"
    decisions = researcher.get(f"/api/v1/labelers/{candidate.user.id}").json()["decisions"]
    assert [(d["decision"], d["note"]) for d in decisions] == [("approved", "good")]

    # a rejected labeler's hold goes back to the queue, and they get nothing more
    held = take(careless, None)
    assert held is not None
    assert researcher.post(f"/api/v1/labelers/{careless.user.id}/reject").status_code == 200
    assert take(careless, None) is None
    r = careless.post(f"/api/v1/tasks/{held['task_id']}/submission", json={"ranking": reference})
    assert r.status_code == 409

    # only researchers decide, and only about labelers
    assert careless.post(f"/api/v1/labelers/{candidate.user.id}/approve").status_code == 403
    for path in ("", "/approve", "/reject"):
        method = researcher.get if not path else researcher.post
        r = method(f"/api/v1/labelers/{researcher.user.id}{path}")
        assert r.status_code == 404 and r.json()["field"] == "labeler_id", path
    # a researcher who ranked tasks is in the table, and their record can be read
    ranking_task(4)
    work(researcher, lambda t: {"ranking": [[c["completion_id"]] for c in t["completions"]][::-1]})
    r = researcher.get(f"/api/v1/labelers/{researcher.user.id}")
    assert r.status_code == 200 and r.json()["stats"]["rankings"] == 1
    assert researcher.post(f"/api/v1/labelers/{researcher.user.id}/approve").status_code == 404


def test_the_labeler_home_says_where_they_stand(client, make_user) -> None:
    from app.db import get_sessionmaker
    from app.models import User
    from tests.conftest import login

    labeler = make_user("labeler")
    login(client, labeler)
    summary = client.get("/labeler/summary", headers={"HX-Request": "true"}).text
    assert "screening-notice" not in summary and "rejected-notice" not in summary
    for status, notice in (("screening", "screening-notice"), ("rejected", "rejected-notice")):
        with get_sessionmaker()() as s:
            s.get_one(User, labeler.id).labeler_status = status
            s.commit()
        summary = client.get("/labeler/summary", headers={"HX-Request": "true"}).text
        assert notice in summary
