"""The labeling hot path stays small: one next-task + submission cycle through the JSON API
runs at most a fixed number of SQL statements (issue 14), on both databases."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import event

from tests.labeling_support import make_prompt, make_ranking_task

# next-task + submission of the usual task (one labeler), the authentication lookup of each
# request included (issue 14's bound); transaction control is not counted
MAX_STATEMENTS_PER_CYCLE = 8
# the last of several labelers also reads the earlier rankings, counts the submissions and
# (adaptive overlap) reads the labeling settings
MAX_STATEMENTS_PER_SHARED_CYCLE = 13


@contextmanager
def counted_statements() -> Iterator[list[str]]:
    from app.db import get_engine

    seen: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        head = statement.lstrip().split(None, 1)[0].upper()
        if head not in {"BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE", "PRAGMA"}:
            seen.append(statement)

    engine = get_engine()
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def _cycle(labeler, kind: str) -> None:
    r = labeler.get("/api/v1/tasks/next", params={"kind": kind})
    assert r.status_code == 200, r.text
    task = r.json()
    body: dict[str, Any]
    if kind == "ranking":
        shown = [c["completion_id"] for c in task["completions"]]
        body = {"ranking": [[cid] for cid in reversed(shown)]}
    else:
        body = {"text": "An ideal answer."}
    r = labeler.post(f"/api/v1/tasks/{task['task_id']}/submission", json=body)
    assert r.status_code == 200, r.text


def _labeling_statements(seen: list[str]) -> list[str]:
    """The statements of the cycle, after checking that authentication is exactly one lookup
    per request."""
    auth = [s for s in seen if "FROM api_tokens" in s]
    assert len(auth) == 2, auth  # next and submission
    return seen


@pytest.fixture(autouse=True)
def _no_gold_draw(monkeypatch: pytest.MonkeyPatch) -> None:
    """The draw that mixes in a gold task (``gold_rate``) costs one more lookup: off here, so
    the count is the same every run."""
    monkeypatch.setenv("PREFLOOP_GOLD_RATE", "0")


def test_a_ranking_cycle_runs_few_statements(api_as) -> None:
    labeler = api_as("labeler")
    for _ in range(3):
        make_ranking_task(make_prompt(), k=5, overlap=1)
    _cycle(labeler, "ranking")  # warm: the token's last-used time is written once a minute
    with counted_statements() as seen:
        _cycle(labeler, "ranking")
    work = _labeling_statements(seen)
    assert len(work) <= MAX_STATEMENTS_PER_CYCLE, "\n".join(work)


def test_a_shared_ranking_cycle_runs_few_statements(api_as) -> None:
    first, second = api_as("labeler"), api_as("labeler")
    for _ in range(2):
        make_ranking_task(make_prompt(), k=5, overlap=2)
    _cycle(first, "ranking")
    _cycle(second, "ranking")  # warm
    _cycle(first, "ranking")
    with counted_statements() as seen:
        _cycle(second, "ranking")  # the last of two labelers: the task is done
    work = _labeling_statements(seen)
    assert len(work) <= MAX_STATEMENTS_PER_SHARED_CYCLE, "\n".join(work)


def test_a_demonstration_cycle_runs_few_statements(api_as) -> None:
    from app.db import get_sessionmaker
    from app.services.queue import ensure_demonstration_tasks

    labeler = api_as("labeler")
    for _ in range(3):
        make_prompt()
    with get_sessionmaker()() as s:
        ensure_demonstration_tasks(s)
        s.commit()
    _cycle(labeler, "demonstration")
    with counted_statements() as seen:
        _cycle(labeler, "demonstration")
    work = _labeling_statements(seen)
    assert len(work) <= MAX_STATEMENTS_PER_CYCLE, "\n".join(work)


def test_the_labelers_own_counts_read_assignments_alone(api_as) -> None:
    """The labeler home's counts of their finished work: one statement, on assignments only
    (their copy of the task's kind), never joined with tasks (issue 14)."""
    import re

    from app.db import get_sessionmaker
    from app.models import User
    from app.services.labeler_work import labeler_counts
    from app.services.queue import ensure_demonstration_tasks

    labeler = api_as("labeler")
    for _ in range(3):
        make_ranking_task(make_prompt(split="test"), k=4, overlap=1)
    make_prompt()
    with get_sessionmaker()() as s:
        ensure_demonstration_tasks(s)
        s.commit()
    _cycle(labeler, "ranking")
    _cycle(labeler, "ranking")
    _cycle(labeler, "demonstration")
    task = labeler.get("/api/v1/tasks/next", params={"kind": "ranking"}).json()
    r = labeler.post(f"/api/v1/tasks/{task['task_id']}/submission", json={"skip": {"reason": "?"}})
    assert r.status_code == 200, r.text
    with get_sessionmaker()() as s:
        user = s.get_one(User, labeler.user.id)
        with counted_statements() as seen:
            counts = labeler_counts(s, user)
    done = {"demonstration": 1, "ranking": 2, "evaluation": 0, "skipped": 1}
    assert counts == {"today": done, "total": done}
    assert len(seen) == 1 and "assignments" in seen[0], seen
    assert not re.search(r"\btasks\b", seen[0]), seen[0]
