"""The task queue's rules: overlap, authors, expiry, lazy demonstration tasks, agreement share."""

from __future__ import annotations

from sqlalchemy import func, select

from app.models import Task
from tests.labeling_support import make_prompt, make_ranking_task


def _read(fn):
    from app.db import get_sessionmaker

    with get_sessionmaker()() as s:
        return fn(s)


def _next(client, kind: str = "ranking"):
    r = client.get(f"/api/v1/tasks/next?kind={kind}")
    assert r.status_code in (200, 204), r.text
    return r.json() if r.status_code == 200 else None


def test_overlap_gives_a_task_to_that_many_distinct_labelers(api_as) -> None:
    task_id, ids = make_ranking_task(make_prompt(), k=4, overlap=2)
    first, second, third = api_as("labeler"), api_as("labeler"), api_as("labeler")
    assert _next(first)["task_id"] == task_id
    assert _next(second)["task_id"] == task_id
    assert _next(third) is None  # both slots are held
    for client in (first, second):
        r = client.post(f"/api/v1/tasks/{task_id}/submission", json={"ranking": [ids]})
        assert r.status_code == 200
    # a labeler never gets a task they already did
    assert _next(first) is None
    assert _read(lambda s: s.get(Task, task_id)).status == "done"
    assert _read(lambda s: s.get(Task, task_id)).filled == 2


def test_a_labeler_never_labels_their_own_prompt(api_as) -> None:
    author, other = api_as("labeler"), api_as("labeler")
    prompt_id = make_prompt("My own prompt", author_id=author.user.id)
    make_ranking_task(prompt_id, k=4)
    assert _next(author, "ranking") is None
    assert _next(author, "demonstration") is None
    assert _next(other, "ranking")["prompt"]["prompt_id"] == prompt_id
    assert _next(other, "demonstration")["prompt"]["prompt_id"] == prompt_id


def test_expired_hold_is_released_and_taken_up_again_in_the_same_order(api_as) -> None:
    from app.db import get_sessionmaker, utcnow
    from app.models import Assignment

    task_id, _ = make_ranking_task(make_prompt(), k=7)
    labeler = api_as("labeler")
    shown = [c["completion_id"] for c in _next(labeler)["completions"]]
    with get_sessionmaker()() as s:
        s.query(Assignment).update({"lock_expires_at": utcnow()})
        s.commit()
    again = _next(labeler)
    assert again["task_id"] == task_id
    assert [c["completion_id"] for c in again["completions"]] == shown
    assert _read(lambda s: s.get(Task, task_id)).filled == 1
    assert _read(lambda s: s.scalar(select(func.count()).select_from(Assignment))) == 1


def test_demonstration_tasks_exist_for_accepted_sft_prompts_only(app_env) -> None:
    from app.db import get_sessionmaker
    from app.services.queue_upkeep import ensure_demonstration_tasks

    wanted = {make_prompt(split="train"), make_prompt(split="val")}
    make_prompt(split="test")
    make_prompt(status="duplicate")
    with get_sessionmaker()() as s:
        assert ensure_demonstration_tasks(s) == 2
        assert ensure_demonstration_tasks(s) == 0  # idempotent
        s.commit()
    tasks = _read(lambda s: s.scalars(select(Task).where(Task.kind == "demonstration")).all())
    assert {t.prompt_id for t in tasks} == wanted
    assert {(t.overlap, t.filled, t.status) for t in tasks} == {(1, 0, "open")}


def test_agreement_share_sets_overlap_for_new_tasks(app_env, monkeypatch) -> None:
    from app.config import get_settings
    from app.db import get_sessionmaker
    from app.services.queue_upkeep import ensure_demonstration_tasks

    monkeypatch.setenv("PREFLOOP_AGREEMENT_SHARE", "1.0")
    monkeypatch.setenv("PREFLOOP_AGREEMENT_OVERLAP", "3")
    get_settings.cache_clear()
    prompt_id = make_prompt()
    with get_sessionmaker()() as s:
        ensure_demonstration_tasks(s)
        s.commit()
    assert _read(lambda s: s.scalar(select(Task.overlap).where(Task.prompt_id == prompt_id))) == 3
    from app.services.completions import add_completions, create_ranking_task

    with get_sessionmaker()() as s:
        rows = add_completions(s, prompt_id, [{"text": f"o{i}", "origin": "t"} for i in range(4)])
        task = create_ranking_task(s, prompt_id, [c.id for c in rows], overlap=None)
        assert task.overlap == 3
        explicit = create_ranking_task(s, prompt_id, [c.id for c in rows], overlap=1)
        assert explicit.overlap == 1
        s.rollback()


def test_own_unfinished_task_comes_first_and_kinds_filter(api_as) -> None:
    labeler = api_as("labeler")
    demo_prompt = make_prompt()
    ranking_task, _ = make_ranking_task(make_prompt(), k=4)
    demo = _next(labeler, "demonstration")
    assert demo["kind"] == "demonstration" and demo["prompt"]["prompt_id"] == demo_prompt
    # any kind: the held demonstration is offered again before anything new
    assert labeler.get("/api/v1/tasks/next").json()["task_id"] == demo["task_id"]
    assert _next(labeler, "ranking")["task_id"] == ranking_task


def test_home_counts_waiting_and_done(api_as, client, make_user) -> None:
    from app.db import get_sessionmaker
    from app.models import User
    from app.services.labeler_work import labeler_counts
    from app.services.queue import waiting_counts

    labeler = api_as("labeler")
    make_prompt()
    make_prompt()
    task_id, ids = make_ranking_task(make_prompt(), k=4)
    with get_sessionmaker()() as s:
        user = s.get_one(User, labeler.user.id)
        # demonstration tasks are made by intake and the sweep (these prompts skipped intake)
        assert waiting_counts(s, user) == {"demonstration": 0, "ranking": 1, "evaluation": 0}
        s.commit()
    _next(labeler, "ranking")
    labeler.post(f"/api/v1/tasks/{task_id}/submission", json={"ranking": [ids]})
    with get_sessionmaker()() as s:
        user = s.get_one(User, labeler.user.id)
        assert waiting_counts(s, user)["ranking"] == 0
        counts = labeler_counts(s, user)
    assert counts["today"]["ranking"] == 1 and counts["total"]["ranking"] == 1
    assert counts["total"]["demonstration"] == 0


def test_a_task_loaded_before_its_submission_reads_what_the_submission_changed(api_as) -> None:
    """The HTML form loads the task before it calls ``submit`` (which locks and updates the
    task in Core): the session's copy then reads the task as the submission left it, for a
    one-labeler task (done by the lock) and for a skip (slot given back)."""
    from app.db import get_sessionmaker
    from app.models import User
    from app.services.labeling import submit

    done_id, ids = make_ranking_task(make_prompt(), k=4)
    skipped_id, _ = make_ranking_task(make_prompt(), k=4, overlap=2)
    labeler = api_as("labeler")
    assert _next(labeler)["task_id"] == done_id
    with get_sessionmaker()() as s:
        task = s.get_one(Task, done_id)
        assert (task.status, task.filled) == ("open", 1)
        payload = {"ranking": [[i] for i in ids], "confirmed_order": True}
        submit(s, s.get_one(User, labeler.user.id), done_id, payload)
        assert (task.status, task.filled) == ("done", 1)
        s.commit()
    assert _next(labeler)["task_id"] == skipped_id
    with get_sessionmaker()() as s:
        task = s.get_one(Task, skipped_id)
        assert task.filled == 1
        submit(s, s.get_one(User, labeler.user.id), skipped_id, {"skip": {"reason": "unclear"}})
        assert (task.status, task.filled) == ("open", 0)
        s.commit()
    assert _read(lambda s: s.get(Task, skipped_id)).filled == 0
