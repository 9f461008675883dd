"""The labeling JSON API: completions, ranking tasks, the next task and the three submissions."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from app.models import FLAGS, Demonstration, Ranking, RankingEntry
from tests.labeling_support import make_prompt, make_ranking_task


def _count(model) -> int:
    return _read(lambda s: s.scalar(select(func.count()).select_from(model)))


def _read(fn):
    """Read in a short transaction of its own (on SQLite an open one would block the app)."""
    from app.db import get_sessionmaker

    with get_sessionmaker()() as s:
        return fn(s)


def test_completions_and_ranking_task_through_the_api(api_as) -> None:
    researcher = api_as("researcher")
    prompt_id = make_prompt()
    r = researcher.post(
        "/api/v1/completions",
        json={
            "prompt_id": prompt_id,
            "completions": [{"text": f"answer {i}", "origin": "vendor-x"} for i in range(5)],
        },
    )
    assert r.status_code == 201, r.text
    completions = r.json()["completions"]
    assert [c["text"] for c in completions] == [f"answer {i}" for i in range(5)]
    assert {c["origin"] for c in completions} == {"vendor-x"}
    ids = [c["completion_id"] for c in completions]

    r = researcher.post(
        "/api/v1/ranking-tasks", json={"prompt_id": prompt_id, "completion_ids": ids, "overlap": 2}
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["kind"] == "ranking" and body["k"] == 5 and body["overlap"] == 2
    assert body["completion_ids"] == ids


def test_ranking_task_rejections_say_why(api_as) -> None:
    researcher = api_as("researcher")
    prompt_id, other_prompt = make_prompt(), make_prompt()
    _, ids = make_ranking_task(prompt_id, k=9)
    _, other_ids = make_ranking_task(other_prompt, k=4)

    def post(body):
        return researcher.post("/api/v1/ranking-tasks", json={"prompt_id": prompt_id, **body})

    cases = [
        ({"completion_ids": ids[:3]}, "4 to 9"),
        ({"completion_ids": [*ids, other_ids[0]]}, "4 to 9"),
        ({"completion_ids": [ids[0], ids[0], ids[1], ids[2]]}, "repeated"),
        ({"completion_ids": [*ids[:3], other_ids[0]]}, "another prompt"),
        ({"completion_ids": [*ids[:3], 999_999]}, "unknown"),
        ({"completion_ids": ids[:4], "overlap": 0}, "overlap"),
    ]
    for body, reason in cases:
        r = post(body)
        assert r.status_code == 422, (body, r.text)
        assert reason in r.json()["detail"], r.json()
        assert r.json()["field"] in {"completion_ids", "overlap"}
    r = researcher.post(
        "/api/v1/completions",
        json={"prompt_id": 999_999, "completions": [{"text": "x", "origin": "y"}]},
    )
    assert r.status_code == 404
    r = researcher.post(
        "/api/v1/completions",
        json={"prompt_id": prompt_id, "completions": [{"text": " ", "origin": "y"}]},
    )
    assert r.status_code == 422 and r.json()["field"] == "completions.0.text"


def test_labelers_cannot_create_tasks(api_as) -> None:
    labeler = api_as("labeler")
    r = labeler.post("/api/v1/ranking-tasks", json={"prompt_id": 1, "completion_ids": [1, 2, 3, 4]})
    assert r.status_code == 403


def test_next_task_ranking_shape_and_204(api_as) -> None:
    labeler = api_as("labeler")
    assert labeler.get("/api/v1/tasks/next?kind=ranking").status_code == 204
    prompt_id = make_prompt("Explain the moon landing to a 6 year old.")
    task_id, ids = make_ranking_task(prompt_id, k=6)

    r = labeler.get("/api/v1/tasks/next?kind=ranking")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["task_id"] == task_id and body["kind"] == "ranking"
    assert body["prompt"] == {
        "prompt_id": prompt_id,
        "text": "Explain the moon landing to a 6 year old.",
        "kind": "api",
        "structure": None,
        "use_case": None,
    }
    shown = [c["completion_id"] for c in body["completions"]]
    assert sorted(shown) == sorted(ids)
    # asking again re-offers the same held task, in the same order
    again = labeler.get("/api/v1/tasks/next?kind=ranking").json()
    assert [c["completion_id"] for c in again["completions"]] == shown
    assert labeler.get("/api/v1/tasks/next?kind=nonsense").status_code == 422


def test_next_task_takes_one_trip_through_the_thread_pool(
    api_as, make_user, make_token, monkeypatch, app_env
) -> None:
    """Next-task and a submission look their caller up with their route's own work (issue
    14): on PostgreSQL one trip through the thread pool per request (two before), on SQLite
    none (the work runs on the event loop, ``app.db.on_the_loop``). The same answers to
    strangers."""
    import anyio.to_thread

    labeler = api_as("labeler")
    task_id, _ = make_ranking_task(make_prompt())
    trips: list[object] = []
    real = anyio.to_thread.run_sync

    async def counted(func, *args, **kwargs):
        trips.append(func)
        return await real(func, *args, **kwargs)

    monkeypatch.setattr(anyio.to_thread, "run_sync", counted)
    r = labeler.get("/api/v1/tasks/next?kind=ranking")
    assert r.status_code == 200 and r.json()["task_id"] == task_id
    on_sqlite = app_env.startswith("sqlite")
    assert len(trips) == (0 if on_sqlite else 1), trips
    shown = [c["completion_id"] for c in r.json()["completions"]]
    r = labeler.post(
        f"/api/v1/tasks/{task_id}/submission", json={"ranking": [[c] for c in shown[::-1]]}
    )
    assert r.status_code == 200, r.text
    assert len(trips) == (0 if on_sqlite else 2), trips  # PostgreSQL: the route (and lookup)

    from fastapi.testclient import TestClient

    from app.main import create_app

    stranger = TestClient(create_app())
    assert stranger.get("/api/v1/tasks/next").status_code == 401
    bad = stranger.get("/api/v1/tasks/next", headers={"Authorization": "Bearer pfl_nonsense"})
    assert bad.status_code == 401 and bad.json()["detail"] == "invalid or revoked token"
    assert bad.headers["www-authenticate"] == "Bearer"
    ingest_only = make_token(make_user("labeler"), scopes=["ingest"])
    r = stranger.get("/api/v1/tasks/next", headers={"Authorization": f"Bearer {ingest_only}"})
    assert r.status_code == 403, r.text
    assert "scope" in r.json()["detail"]


def test_the_hot_paths_routes_open_their_session_in_their_own_thread(
    api_as, make_user, make_token
) -> None:
    """Next-task and a first submission solve no session dependency (issue 14): besides their
    parameters (and the app's CSRF check), the caller is all FastAPI solves for them (a yield
    dependency, and the role check's chain, cost a request tens of microseconds each), and a
    submission still answers strangers and scoped tokens as every route does."""
    from fastapi.testclient import TestClient

    from app.main import create_app
    from tests.unit.test_roles import iter_api_routes

    def solved(dependant) -> list[str]:
        return [name for d in dependant.dependencies for name in (d.call.__name__, *solved(d))]

    hot = {("GET", "/api/v1/tasks/next"), ("POST", "/api/v1/tasks/{task_id}/submission")}
    app = create_app()
    found = {
        (method, route.path): solved(route.dependant)
        for route in iter_api_routes(app.routes)
        for method in route.methods or ()
        if (method, route.path) in hot
    }
    assert set(found) == hot
    for dependencies in found.values():
        assert dependencies == ["dependency"], dependencies  # caller(Role.labeler)'s

    labeler = api_as("labeler")
    task_id, _ = make_ranking_task(make_prompt())
    task = labeler.get("/api/v1/tasks/next?kind=ranking").json()
    shown = [c["completion_id"] for c in task["completions"]]
    url = f"/api/v1/tasks/{task_id}/submission"
    stranger = TestClient(app)
    body = {"ranking": [[cid] for cid in reversed(shown)]}
    assert stranger.post(url, json=body).status_code == 401
    # without a body, the middleware that looks a body's sender up first has nothing to guard:
    # a stranger still gets the 401, not the 422 about the missing body
    for headers in ({}, {"Authorization": "Bearer pfl_nonsense"}):
        assert stranger.post(url, headers=headers).status_code == 401
    forged = stranger.post(url, json=body, headers={"Authorization": "Bearer pfl_nonsense"})
    assert forged.status_code == 401 and forged.json()["detail"] == "invalid or revoked token"
    ingest_only = make_token(make_user("labeler"), scopes=["ingest"])
    r = stranger.post(url, json=body, headers={"Authorization": f"Bearer {ingest_only}"})
    assert r.status_code == 403 and "scope" in r.json()["detail"], r.text
    # a request that fails before its route runs (which looks the caller up on PostgreSQL):
    # a stranger gets the 401 first, a labeler the 422
    forged_token = {"Authorization": "Bearer pfl_nonsense"}
    labeler_token = {"Authorization": labeler.headers["authorization"]}
    as_json = {"Content-Type": "application/json"}
    for path, content in (
        (url, b'{"ranking": "first"}'),  # not the body's shape
        (url, b'{"ranking": [[1]'),  # not JSON
        ("/api/v1/tasks/99999999999/submission", json.dumps(body).encode()),  # no such id
    ):
        r = stranger.post(path, content=content, headers={**as_json, **forged_token})
        assert r.status_code == 401, (path, content, r.text)
        assert r.json()["detail"] == "invalid or revoked token"
        r = stranger.post(path, content=content, headers={**as_json, **labeler_token})
        assert r.status_code == 422, (path, content, r.text)
    # a submission the service refuses changes nothing: the same labeler then submits
    r = labeler.post(url, json={"ranking": [[cid] for cid in shown[1:]]})
    assert r.status_code == 422, r.text
    r = labeler.post(url, json=body)
    assert r.status_code == 200, r.text


def test_a_callers_session_is_rolled_back_when_its_route_fails(app_env: str, make_user) -> None:
    """``Caller.session``: what a failing route wrote is not stored, on both databases (on
    SQLite the write lock is free again at once); the request's shared session is rolled back
    too, and left for the middleware that opened it to close."""
    from sqlalchemy import update

    from app.db import get_sessionmaker
    from app.deps import Caller
    from app.models import Role, User

    user = make_user("labeler")

    def rename(session) -> None:
        session.execute(update(User).where(User.id == user.id).values(username="renamed"))
        raise RuntimeError("the route failed")

    with pytest.raises(RuntimeError), Caller(None, Role.labeler).session() as session:  # type: ignore[arg-type]
        rename(session)
    shared = get_sessionmaker()()
    with pytest.raises(RuntimeError), Caller(None, Role.labeler, shared).session() as session:  # type: ignore[arg-type]
        assert session is shared
        rename(session)
    assert not shared.in_transaction()
    with Caller(None, Role.labeler).session() as session:  # type: ignore[arg-type]
        assert session.scalar(select(User.username).where(User.id == user.id)) == user.username
        session.execute(update(User).where(User.id == user.id).values(held_out=False))
        session.commit()
    shared.close()


def test_demonstration_submission_and_idempotent_repeat(api_as) -> None:
    labeler = api_as("labeler")
    prompt_id = make_prompt("Write a haiku about rain.")
    task = labeler.get("/api/v1/tasks/next?kind=demonstration").json()
    assert (
        task["prompt"]["prompt_id"] == prompt_id
        and "completions" not in task
        or task["completions"] is None
    )
    url = f"/api/v1/tasks/{task['task_id']}/submission"
    text = "Soft rain on the roof\nthe gutters hum a low song\nthe garden drinks deep"
    first = labeler.post(url, json={"text": text, "time_spent_ms": 4200})
    assert first.status_code == 200, first.text
    again = labeler.post(url, json={"text": text, "time_spent_ms": 9999})
    assert again.status_code == 200 and again.json()["replayed"] is True
    assert again.json()["demonstration_id"] == first.json()["demonstration_id"]
    assert _count(Demonstration) == 1
    demo = _read(lambda s: s.scalar(select(Demonstration)))
    assert demo.text == text and demo.time_spent_ms == 4200 and demo.prompt_id == prompt_id
    changed = labeler.post(url, json={"text": "something else"})
    assert changed.status_code == 409
    assert labeler.get("/api/v1/tasks/next?kind=demonstration").status_code == 204


def test_ranking_submission_with_ties_likert_and_flags(api_as) -> None:
    labeler = api_as("labeler")
    task_id, ids = make_ranking_task(make_prompt(), k=5)
    shown = [c["completion_id"] for c in labeler.get("/api/v1/tasks/next").json()["completions"]]
    a, b, c, d, e = ids
    body = {
        "ranking": [[c], [a, e], [b], [d]],
        "ratings": {
            str(c): {"likert": 7, "flags": ["satisfies_constraint"]},
            str(a): {"likert": 5, "flags": []},
            str(d): {"likert": 1, "flags": ["hallucination", "harmful_advice"]},
        },
    }
    r = labeler.post(f"/api/v1/tasks/{task_id}/submission", json=body)
    assert r.status_code == 200, r.text
    ranking = _read(lambda s: s.scalar(select(Ranking)))
    assert ranking.k == 5 and ranking.display_order == shown and ranking.time_spent_ms >= 0
    entries = {
        en.completion_id: (en.rank, en.likert, en.flags)
        for en in _read(lambda s: s.scalars(select(RankingEntry)).all())
    }
    assert entries == {
        c: (1, 7, ["satisfies_constraint"]),
        a: (2, 5, []),
        e: (2, None, []),
        b: (3, None, []),
        d: (4, 1, ["hallucination", "harmful_advice"]),
    }
    # identical again (ties given in another order): 200, still one ranking
    body["ranking"] = [[c], [e, a], [b], [d]]
    assert labeler.post(f"/api/v1/tasks/{task_id}/submission", json=body).status_code == 200
    assert _count(Ranking) == 1 and _count(RankingEntry) == 5


@pytest.mark.parametrize(
    ("make_body", "status", "field"),
    [
        (lambda ids: {"ranking": [[i] for i in ids[:-1]]}, 422, "ranking"),  # one missing
        (lambda ids: {"ranking": [[i] for i in ids] + [[ids[0]]]}, 422, "ranking"),  # repeated
        (lambda ids: {"ranking": [[i] for i in ids] + [[10**6]]}, 422, "ranking"),  # unknown id
        (
            lambda ids: {"ranking": [[i] for i in ids], "ratings": {str(ids[0]): {"likert": 8}}},
            422,
            "ratings.ID0.likert",
        ),
        (
            lambda ids: {"ranking": [[i] for i in ids], "ratings": {str(ids[0]): {"likert": 0}}},
            422,
            "ratings.ID0.likert",
        ),
        (
            lambda ids: {
                "ranking": [[i] for i in ids],
                "ratings": {str(ids[0]): {"flags": ["rude"]}},
            },
            422,
            "ratings.ID0.flags",
        ),
        (
            lambda ids: {"ranking": [[i] for i in ids], "ratings": {str(10**6): {"likert": 3}}},
            422,
            "ratings.1000000",
        ),
        (lambda ids: {"ranking": [[i] for i in ids], "skip": {"reason": "x"}}, 422, "submission"),
        (lambda ids: {"text": "a demonstration for a ranking task"}, 422, "ranking"),
        (lambda ids: {"skip": {"reason": "   "}}, 422, "skip"),
        (lambda ids: {}, 422, "submission"),
    ],
)
def test_invalid_ranking_submissions_are_rejected(api_as, make_body, status, field) -> None:
    labeler = api_as("labeler")
    task_id, ids = make_ranking_task(make_prompt(), k=4)
    labeler.get("/api/v1/tasks/next")
    r = labeler.post(f"/api/v1/tasks/{task_id}/submission", json=make_body(ids))
    assert r.status_code == status, r.text
    assert r.json()["field"] == field.replace("ID0", str(ids[0]))
    assert _count(Ranking) == 0
    # nothing was lost: a valid submission still goes through
    ok = labeler.post(f"/api/v1/tasks/{task_id}/submission", json={"ranking": [ids]})
    assert ok.status_code == 200, ok.text


def test_submission_for_a_task_not_yours_or_expired(api_as, monkeypatch) -> None:
    alice, bob = api_as("labeler"), api_as("labeler")
    task_id, ids = make_ranking_task(make_prompt(), k=4)
    assert (
        bob.post(f"/api/v1/tasks/{task_id}/submission", json={"ranking": [ids]}).status_code == 403
    )
    assert bob.post("/api/v1/tasks/999999/submission", json={"ranking": [ids]}).status_code == 404
    alice.get("/api/v1/tasks/next")
    # alice's hold runs out
    from app.db import get_sessionmaker, utcnow
    from app.models import Assignment

    with get_sessionmaker()() as s:
        s.query(Assignment).update({"lock_expires_at": utcnow()})
        s.commit()
    r = alice.post(f"/api/v1/tasks/{task_id}/submission", json={"ranking": [ids]})
    assert r.status_code == 409 and "expired" in r.json()["detail"]
    # the slot went back: bob gets the task now
    assert bob.get("/api/v1/tasks/next").json()["task_id"] == task_id
    assert (
        bob.post(f"/api/v1/tasks/{task_id}/submission", json={"ranking": [ids]}).status_code == 200
    )


def test_skip_is_recorded_and_passes_the_task_on_until_too_many_skip(api_as) -> None:
    from app.models import Assignment, Task

    task_id, ids = make_ranking_task(make_prompt(), k=4)
    body = {"skip": {"reason": "I cannot tell what the user wants."}}
    first = api_as("labeler")
    first.get("/api/v1/tasks/next?kind=ranking")
    r = first.post(f"/api/v1/tasks/{task_id}/submission", json=body)
    assert r.status_code == 200 and r.json()["status"] == "skipped"
    assert first.post(f"/api/v1/tasks/{task_id}/submission", json=body).status_code == 200
    assignment = _read(lambda s: s.scalar(select(Assignment)))
    assert assignment.status == "skipped" and assignment.skip_reason == body["skip"]["reason"]
    task = _read(lambda s: s.get(Task, task_id))
    assert (task.status, task.filled) == ("open", 0)
    assert (
        first.get("/api/v1/tasks/next?kind=ranking").status_code == 204
    )  # never offered to them again

    # the next labeler gets it; after `task_max_skips` (3) skips it is closed as unclear
    for _ in range(2):
        other = api_as("labeler")
        assert other.get("/api/v1/tasks/next?kind=ranking").json()["task_id"] == task_id
        assert other.post(f"/api/v1/tasks/{task_id}/submission", json=body).status_code == 200
    task = _read(lambda s: s.get(Task, task_id))
    assert (task.status, task.filled) == ("closed", 0)
    assert api_as("labeler").get("/api/v1/tasks/next?kind=ranking").status_code == 204
    assert _count(Ranking) == 0


def test_flags_are_the_methods_eleven() -> None:
    assert len(FLAGS) == 11
