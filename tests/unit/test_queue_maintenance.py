"""The queue's upkeep runs off the next-task path (the periodic sweep, and intake) and keeps
the queue correct: expired holds come back to the queue, new prompts get demonstration tasks."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from app.models import Assignment, Task
from tests.labeling_support import make_prompt, make_ranking_task


def _read(fn):
    from app.db import get_sessionmaker

    with get_sessionmaker()() as s:
        return fn(s)


def _expire_holds() -> None:
    from app.db import get_sessionmaker, utcnow

    with get_sessionmaker()() as s:
        s.execute(update(Assignment).values(lock_expires_at=utcnow() - timedelta(seconds=1)))
        s.commit()


def _demonstration_tasks() -> int:
    return _read(
        lambda s: s.scalar(
            select(func.count()).select_from(Task).where(Task.kind == "demonstration")
        )
    )


def test_the_periodic_sweep_gives_expired_holds_back(api_as) -> None:
    from app.worker.heartbeat import sweep_jobs

    first, second = api_as("labeler"), api_as("labeler")
    task_id, _ = make_ranking_task(make_prompt(), k=4, overlap=1)
    r = first.get("/api/v1/tasks/next", params={"kind": "ranking"})
    assert r.status_code == 200 and r.json()["task_id"] == task_id
    _expire_holds()

    sweep_jobs()

    hold = _read(lambda s: s.scalars(select(Assignment)).one())
    assert hold.status == "expired"
    assert _read(lambda s: s.get_one(Task, task_id).filled) == 0
    r = second.get("/api/v1/tasks/next", params={"kind": "ranking"})
    assert r.status_code == 200 and r.json()["task_id"] == task_id
    # the first labeler's late submission is refused: the hold is gone
    shown = [c["completion_id"] for c in r.json()["completions"]]
    late = first.post(
        f"/api/v1/tasks/{task_id}/submission", json={"ranking": [[c] for c in reversed(shown)]}
    )
    assert late.status_code == 409, late.text
    assert "expired" in late.json()["detail"]


def test_an_expired_hold_is_released_when_the_queue_looks_empty(api_as) -> None:
    """Before the next sweep, a labeler who finds nothing else still gets the freed slot."""
    first, second = api_as("labeler"), api_as("labeler")
    task_id, _ = make_ranking_task(make_prompt(), k=4, overlap=1)
    assert first.get("/api/v1/tasks/next", params={"kind": "ranking"}).status_code == 200
    _expire_holds()
    r = second.get("/api/v1/tasks/next", params={"kind": "ranking"})
    assert r.status_code == 200 and r.json()["task_id"] == task_id


def test_the_sweep_makes_demonstration_tasks_for_new_prompts(app_env) -> None:
    from app.worker.heartbeat import sweep_jobs

    make_prompt(), make_prompt()  # stored by another door (no intake, no labeler looked)
    assert _demonstration_tasks() == 0
    sweep_jobs()
    assert _demonstration_tasks() == 2
    sweep_jobs()  # idempotent
    assert _demonstration_tasks() == 2


def test_a_slow_search_for_missing_tasks_is_spaced_out(app_env, monkeypatch) -> None:
    """At a million prompts the search for prompts without a demonstration task reads them all
    (1.7-2.2 s); the periodic sweep (every 5 s) ran it every time. A slow search now runs
    again only SCAN_SPACING times its duration later; a fast one on every upkeep (above)."""
    from app.services import queue_upkeep
    from app.worker.heartbeat import sweep_jobs

    monkeypatch.setattr(queue_upkeep, "FAST_SCAN_S", 0.0)  # every search counts as slow
    monkeypatch.setattr(queue_upkeep, "SCAN_SPACING", 1e6)
    make_prompt()
    sweep_jobs()
    assert _demonstration_tasks() == 1
    make_prompt()  # stored by another door
    sweep_jobs()  # the search is not due yet: before, it ran again
    assert _demonstration_tasks() == 1
    queue_upkeep.reset_scan_spacing()
    sweep_jobs()
    assert _demonstration_tasks() == 2


def test_ingested_prompts_have_demonstration_tasks_at_once(api_as) -> None:
    api = api_as("researcher")
    r = api.post(
        "/api/v1/prompts",
        json={
            "prompts": [
                {"text": f"Explain topic number {i} simply.", "user_id": f"customer-{i}"}
                for i in range(5)
            ]
        },
    )
    assert r.status_code == 200, r.text
    from app.config import get_settings

    accepted = [p for p in r.json()["results"] if p["status"] == "accepted"]
    splits = set(get_settings().demonstration_splits)
    expected = sum(1 for p in accepted if p["split"] in splits)
    assert expected > 0  # the default splits send most prompts to demonstrations
    assert _demonstration_tasks() == expected


def test_intake_makes_the_tasks_of_its_own_prompts_only(api_as) -> None:
    """Intake looks only at the id range it just stored (a primary-key range, not an anti-join
    over every prompt, which a fresh table's missing statistics made 0.9 s per request); a
    prompt stored earlier by another door is the periodic sweep's."""
    from app.worker.heartbeat import sweep_jobs

    older = make_prompt()  # no intake, no sweep yet
    api = api_as("researcher")
    r = api.post(
        "/api/v1/prompts",
        json={"prompts": [{"text": "Explain tides to a child, briefly.", "user_id": "u-1"}]},
    )
    assert r.status_code == 200, r.text
    (result,) = r.json()["results"]
    made = _read(lambda s: set(s.scalars(select(Task.prompt_id)).all()))
    wanted_new = {result["prompt_id"]} if result["split"] in ("train", "val") else set()
    assert result["status"] == "accepted" and made == wanted_new
    sweep_jobs()
    assert older in _read(lambda s: set(s.scalars(select(Task.prompt_id)).all()))


def test_a_task_the_sweep_makes_meanwhile_is_not_nothing_waiting(
    app_env, api_as, monkeypatch
) -> None:
    """The sweep commits a new prompt's demonstration task between the queue's first look and
    its own upkeep (which then has nothing left to make). Before: the labeler was told that
    nothing is waiting (a browser test met this on PostgreSQL in CI)."""
    if app_env.startswith("sqlite"):
        # one writer at a time: the request holds SQLite's write lock from its first look, so
        # the sweep cannot commit in between (here it would time out on the lock instead)
        pytest.skip("the race needs concurrent writers: PostgreSQL")
    from app.services import queue_upkeep
    from app.worker.heartbeat import sweep_jobs

    labeler = api_as("labeler")
    make_prompt("Summarise the water cycle.")
    upkeep = queue_upkeep.maintain_queue

    def sweep_first(*args, **kwargs):
        sweep_jobs()  # another process, committed before this request's upkeep
        return upkeep(*args, **kwargs)

    monkeypatch.setattr(queue_upkeep, "maintain_queue", sweep_first)
    r = labeler.get("/api/v1/tasks/next", params={"kind": "demonstration"})
    assert r.status_code == 200, r.status_code
    assert r.json()["prompt"]["text"] == "Summarise the water cycle."
