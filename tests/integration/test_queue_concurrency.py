"""50 labelers pull and submit at once: every task ends with exactly `overlap` rankings.

Each simulated labeler is a thread with its own database sessions calling the same services as
the API. Runs on PostgreSQL (row locks, SKIP LOCKED) and on SQLite (serialised writers).
"""

from __future__ import annotations

import threading
from collections import Counter

from sqlalchemy import func, select

from app.models import Assignment, Ranking, RankingEntry, Task
from tests.labeling_support import make_prompt, make_ranking_task

LABELERS = 50
TASKS = 30


def _labeler_loop(user_id: int, start: threading.Barrier, errors: list[BaseException]) -> None:
    from app.db import get_sessionmaker
    from app.models import User
    from app.services.labeling import describe_assignment, submit
    from app.services.queue import assign_next_task

    maker = get_sessionmaker()
    try:
        start.wait()
        while True:
            with maker() as s:
                user = s.get_one(User, user_id)
                assignment = assign_next_task(s, user, "ranking")
                if assignment is None:
                    s.commit()
                    return
                task = describe_assignment(s, assignment)
                s.commit()
            shown = [c["completion_id"] for c in task["completions"]]
            # best = the order shown, with the last two tied; every third labeler repeats the
            # submission (a retry after a network error): it must not create a second ranking
            body = {
                "ranking": [[cid] for cid in shown[:-2]] + [shown[-2:]],
                "ratings": {shown[0]: {"likert": 6, "flags": ["expresses_opinion"]}},
            }
            for _ in range(2 if user_id % 3 == 0 else 1):
                with maker() as s:
                    submit(s, s.get_one(User, user_id), task["task_id"], body)
                    s.commit()
    except BaseException as exc:  # reported by the test
        errors.append(exc)


def test_fifty_labelers_at_once_fill_every_task_exactly(app_env, make_user) -> None:  # type: ignore[no-untyped-def]
    from app.db import get_sessionmaker

    overlaps = {}
    for i in range(TASKS):
        task_id, _ = make_ranking_task(make_prompt(), k=4 + i % 6, overlap=1 + i % 3)
        overlaps[task_id] = 1 + i % 3
    users = [make_user("labeler").id for _ in range(LABELERS)]

    start = threading.Barrier(LABELERS)
    errors: list[BaseException] = []
    threads = [threading.Thread(target=_labeler_loop, args=(uid, start, errors)) for uid in users]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads), "a labeler thread hung"
    assert not errors, errors

    with get_sessionmaker()() as s:
        per_task = Counter(s.scalars(select(Ranking.task_id)).all())
        assert per_task == overlaps  # every task exactly `overlap` rankings: none lost or extra
        pairs = s.execute(select(Ranking.task_id, Ranking.labeler_id)).all()
        assert len(pairs) == len(set(pairs)) == sum(overlaps.values())
        tasks = s.scalars(select(Task)).all()
        assert {(t.status, t.filled == t.overlap) for t in tasks} == {("done", True)}
        assert (
            s.scalar(
                select(func.count()).select_from(Assignment).where(Assignment.status != "submitted")
            )
            == 0
        )
        entries = s.scalar(select(func.count()).select_from(RankingEntry))
        assert entries == s.scalar(select(func.sum(Ranking.k)))
