"""Nothing submitted untouched (both doors), Likert required by the project, and "My work":
the labeler's history and editing their own submission while its task is open."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from app.models import Demonstration, Ranking, RankingEntry
from tests.conftest import csrf_from, login
from tests.labeling_support import make_prompt, make_ranking_task


def _read(fn):
    from app.db import get_sessionmaker

    with get_sessionmaker()() as s:
        return fn(s)


def _entries() -> dict[int, tuple[int, int | None, list[str]]]:
    rows = _read(lambda s: s.scalars(select(RankingEntry)).all())
    return {e.completion_id: (e.rank, e.likert, e.flags) for e in rows}


def test_untouched_ranking_is_refused_unless_confirmed(api_as) -> None:
    labeler = api_as("labeler")
    task_id, _ = make_ranking_task(make_prompt(split="test"), k=4)
    shown = [c["completion_id"] for c in labeler.get("/api/v1/tasks/next").json()["completions"]]
    url = f"/api/v1/tasks/{task_id}/submission"
    as_shown = {"ranking": [[c] for c in shown]}
    r = labeler.post(url, json=as_shown)
    assert r.status_code == 422 and r.json()["field"] == "ranking"
    assert "order shown" in r.json()["detail"] and "confirmed_order" in r.json()["detail"]
    assert _read(lambda s: s.scalar(select(Ranking))) is None
    # one score is input enough; so is the client's confirmation
    rated = {**as_shown, "ratings": {str(shown[0]): {"likert": 4}}}
    assert labeler.post(url, json={**as_shown, "confirmed_order": True}).status_code == 200
    assert labeler.post(url, json=rated).status_code == 409  # already submitted, different
    assert _entries() == {c: (i + 1, None, []) for i, c in enumerate(shown)}


def test_likert_required_by_the_project(api_as, monkeypatch) -> None:
    from app.config import get_settings

    monkeypatch.setenv("PREFLOOP_LIKERT_REQUIRED", "true")
    get_settings.cache_clear()
    labeler = api_as("labeler")
    task_id, ids = make_ranking_task(make_prompt(split="test"), k=4)
    task = labeler.get("/api/v1/tasks/next").json()
    assert task["likert_required"] is True
    url = f"/api/v1/tasks/{task_id}/submission"
    body: dict[str, Any] = {
        "ranking": [ids[::-1]],
        "ratings": {str(i): {"likert": 3} for i in ids[:3]},
    }
    r = labeler.post(url, json=body)
    assert r.status_code == 422 and r.json()["field"] == "ratings" and str(ids[3]) in r.text
    body["ratings"][str(ids[3])] = {"likert": 5}
    assert labeler.post(url, json=body).status_code == 200


def test_edit_own_ranking_through_the_api_while_the_task_is_open(api_as) -> None:
    alice, bob = api_as("labeler"), api_as("labeler")
    task_id, ids = make_ranking_task(make_prompt(split="test"), k=4, overlap=2)
    alice.get("/api/v1/tasks/next")
    url = f"/api/v1/tasks/{task_id}/submission"
    a, b, c, d = ids
    assert alice.put(url, json={"ranking": [ids]}).status_code == 409  # nothing submitted yet
    assert alice.post(url, json={"ranking": [[a], [b, c], [d]]}).status_code == 200
    assert bob.put(url, json={"ranking": [ids]}).status_code == 403  # not bob's
    edit = {"ranking": [[d], [c], [b], [a]], "ratings": {str(d): {"likert": 6}}}
    r = alice.put(url, json=edit)
    assert r.status_code == 200, r.text
    assert _entries() == {d: (1, 6, []), c: (2, None, []), b: (3, None, []), a: (4, None, [])}
    bad = alice.put(url, json={"ranking": [[a], [b]]})  # an edit is checked like a submission
    assert bad.status_code == 422 and bad.json()["field"] == "ranking"
    assert alice.put(url, json={"skip": {"reason": "x"}}).status_code == 422
    # once the second labeler submits the task is done: no more edits
    bob.get("/api/v1/tasks/next")
    assert bob.post(url, json={"ranking": [ids]}).status_code == 200
    r = alice.put(url, json={"ranking": [ids]})
    assert r.status_code == 409 and "no longer change" in r.json()["detail"]
    assert _read(lambda s: len(s.scalars(select(Ranking)).all())) == 2


def test_my_work_lists_submissions_and_edits_a_demonstration(client, make_user) -> None:
    from app.db import get_sessionmaker
    from app.models import Task

    labeler = make_user("labeler")
    make_prompt("Explain tides to a child.")
    login(client, labeler)
    page = client.get("/labeler/next?kind=demonstration")
    task_id = int(page.url.path.rsplit("/", 1)[1])
    with get_sessionmaker()() as s:  # a second labeler is wanted: the task stays open
        s.get_one(Task, task_id).overlap = 2
        s.commit()
    token = csrf_from(page.text)
    client.post(page.url.path, data={"csrf_token": token, "text": "The moon pulls the sea."})

    work = client.get("/labeler/work?period=today")
    assert work.status_code == 200 and "Explain tides" in work.text
    assert f'href="/labeler/work/{task_id}"' in work.text  # editable
    assert client.get("/labeler/work?period=someday").status_code == 422
    edit = client.get(f"/labeler/work/{task_id}")
    assert edit.status_code == 200 and "The moon pulls the sea.</textarea>" in edit.text
    assert f'action="/labeler/work/{task_id}"' in edit.text and "skip-task" not in edit.text
    r = client.post(f"/labeler/work/{task_id}", data={"csrf_token": token, "text": "  "})
    assert r.status_code == 422 and "write the ideal response" in r.text
    r = client.post(
        f"/labeler/work/{task_id}", data={"csrf_token": token, "text": "The moon pulls the sea up."}
    )
    assert r.status_code == 200 and "are saved" in r.text
    assert _read(lambda s: s.scalar(select(Demonstration.text))) == "The moon pulls the sea up."
    # someone else's task, or an unknown one: not editable
    assert client.get("/labeler/work/2147483647").status_code == 404


def test_untouched_ranking_form_is_refused_inline_and_confirmed_by_a_checkbox(
    client, make_user
) -> None:
    task_id, _ = make_ranking_task(make_prompt(split="test"), k=4)
    login(client, make_user("labeler"))
    page = client.get("/labeler/next?kind=ranking")
    token = csrf_from(page.text)
    r = client.post(f"/labeler/tasks/{task_id}", data={"csrf_token": token})
    assert r.status_code == 422 and 'id="untouched"' in r.text and "order shown" in r.text
    assert _read(lambda s: s.scalar(select(Ranking))) is None
    r = client.post(f"/labeler/tasks/{task_id}", data={"csrf_token": token, "confirmed_order": "1"})
    assert r.status_code == 200 and "Saved." in r.text
