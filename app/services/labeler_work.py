"""A labeler's own finished work: counts for the home page, and the "My work" history with
what may still be edited (a submission whose task is still open, see `labeling.revise`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from app.db import utcnow
from app.models import (
    Assignment,
    AssignmentStatus,
    Demonstration,
    Prompt,
    Ranking,
    Task,
    TaskStatus,
    User,
)
from app.services import Invalid, NotFound
from app.services.labeling import check_editable, own_assignment
from app.services.queue import FINISHED
from app.services.task_kinds import SHOWN_KINDS, shown_kind_of, spec_of

PERIODS = ("today", "all")
PER_PAGE = 50


def _midnight() -> datetime:
    return utcnow().replace(hour=0, minute=0, second=0, microsecond=0)


def labeler_counts(session: Session, labeler: User) -> dict[str, dict[str, int]]:
    """The labeler's finished work, today (UTC) and in total: per kind, and skips. Reads the
    assignments alone (their copy of the task's kind), from the index on (labeler, status,
    kind, finished_at): no join with tasks, so it costs the labeler's finished rows in one
    index range (issue 14)."""
    midnight = _midnight()
    rows = session.execute(
        select(
            Assignment.task_kind,
            Assignment.status,
            func.count(),
            func.sum(case((Assignment.finished_at >= midnight, 1), else_=0)),
        )
        .where(Assignment.labeler_id == labeler.id, Assignment.status.in_(FINISHED))
        .group_by(Assignment.task_kind, Assignment.status)
    ).all()
    counts = {period: dict.fromkeys([*SHOWN_KINDS, "skipped"], 0) for period in ("today", "total")}
    for kind, status, total, today in rows:
        key = "skipped" if status == AssignmentStatus.skipped.value else shown_kind_of(kind)
        counts["total"][key] += total
        counts["today"][key] += int(today or 0)
    return counts


def my_work(
    session: Session, labeler: User, *, period: str = "all", page: int = 1
) -> dict[str, Any]:
    """The labeler's submissions and skips, newest first, ``PER_PAGE`` a page; ``period`` is
    ``today`` (since midnight UTC) or ``all``."""
    if period not in PERIODS:
        raise Invalid(f"period must be one of {', '.join(PERIODS)}", field="period")
    if page < 1:
        raise Invalid("page must be 1 or more", field="page")
    where = [Assignment.labeler_id == labeler.id, Assignment.status.in_(FINISHED)]
    if period == "today":
        where.append(Assignment.finished_at >= _midnight())
    total = session.scalar(select(func.count()).select_from(Assignment).where(*where)) or 0
    rows = session.execute(
        select(Assignment, Task.kind, Task.status, Prompt.id, func.substr(Prompt.text, 1, 160))
        .join(Task, Task.id == Assignment.task_id)
        .join(Prompt, Prompt.id == Task.prompt_id)
        .where(*where)
        .order_by(Assignment.finished_at.desc(), Assignment.id.desc())
        .limit(PER_PAGE)
        .offset((page - 1) * PER_PAGE)
    ).all()
    items = [
        {
            "task_id": a.task_id,
            "kind": shown_kind_of(kind),
            "status": a.status,
            "finished_at": a.finished_at,
            "prompt_id": prompt_id,
            "prompt_excerpt": excerpt,
            "skip_reason": a.skip_reason,
            "editable": a.status == AssignmentStatus.submitted.value
            and task_status == TaskStatus.open.value,
        }
        for a, kind, task_status, prompt_id, excerpt in rows
    ]
    pages = max(1, -(-total // PER_PAGE))
    return {"items": items, "total": total, "page": page, "pages": pages, "period": period}


def editable_submission(session: Session, labeler: User, task_id: int) -> dict[str, Any]:
    """The labeler's stored answer for a task they may still edit: ``{"assignment", "text"}``
    for a demonstration, ``{"assignment", "entries": [(completion_id, rank, likert, flags)]}``
    for a ranking. 404 for an unknown task, 403 for one not theirs, 409 once it cannot
    change."""
    task = session.get(Task, task_id)
    if task is None:
        raise NotFound(f"task {task_id} does not exist", field="task_id")
    assignment = own_assignment(session, labeler, task_id)
    check_editable(assignment, task)
    if spec_of(task.kind).form == "demonstration":
        text = session.scalar(
            select(Demonstration.text).where(
                Demonstration.task_id == task_id, Demonstration.labeler_id == labeler.id
            )
        )
        return {"assignment": assignment, "text": text}
    ranking = session.scalars(
        select(Ranking).where(Ranking.task_id == task_id, Ranking.labeler_id == labeler.id)
    ).one()
    entries = [(e.completion_id, e.rank, e.likert, list(e.flags)) for e in ranking.entries]
    return {"assignment": assignment, "entries": entries}
