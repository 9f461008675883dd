"""Labelers submitting one task at the same instant: its agreement tally still counts every
pair of labelers exactly once (the task's row lock serialises them), on PostgreSQL and SQLite."""

from __future__ import annotations

import threading

from tests.quality_support import ranking_task

LABELERS = 6


def _submit_together(user_ids: list[int], orders: dict[int, list[list[int]]]) -> None:
    from app.db import get_sessionmaker
    from app.models import User
    from app.services.labeling import submit
    from app.services.queue import assign_next_task

    maker = get_sessionmaker()
    holding = threading.Barrier(len(user_ids))
    errors: list[BaseException] = []

    def labeler(user_id: int) -> None:
        try:
            with maker() as s:
                user = s.get_one(User, user_id)
                assignment = assign_next_task(s, user, "ranking")
                assert assignment is not None
                task_id = assignment.task_id
                s.commit()
            holding.wait(timeout=60)
            with maker() as s:
                user = s.get_one(User, user_id)
                # a deliberate order, which may be the one shown: confirmed (else refused as
                # untouched, docs/labeling.md)
                body = {"ranking": orders[user_id], "confirmed_order": True}
                submit(s, user, task_id, body)
                s.commit()
        except BaseException as exc:
            errors.append(exc)
            holding.abort()

    threads = [threading.Thread(target=labeler, args=(uid,)) for uid in user_ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors


def test_concurrent_submissions_keep_the_agreement_tally_exact(app_env, make_user) -> None:
    from app.db import get_sessionmaker
    from app.models import Task
    from app.services.judgment_scores import rescore_task
    from app.services.labeling_settings import update_overlap_settings

    with get_sessionmaker()() as s:  # no adaptive reopening here: 6 labelers is the maximum
        update_overlap_settings(s, {"adaptive_overlap_max": LABELERS})
        s.commit()
    task_id, ids = ranking_task(4, overlap=LABELERS)
    users = [make_user("labeler").id for _ in range(LABELERS)]
    # half rank best-first, half the reverse: 3 + 3 agreeing pairs of 15
    orders = {uid: [[cid] for cid in (ids if n % 2 else ids[::-1])] for n, uid in enumerate(users)}
    _submit_together(users, orders)
    with get_sessionmaker()() as s:
        task = s.get_one(Task, task_id)
        live = (task.agreement_credit, task.agreement_pairs, task.status)
        rescore_task(s, task)
        assert live == (task.agreement_credit, task.agreement_pairs, "done")
        # C(6,2) labeler pairs x C(4,2) output pairs; 6 agreeing labeler pairs
        assert live[:2] == (6 * 6.0, 15 * 6)
        s.rollback()
