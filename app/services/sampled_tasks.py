"""Ranking tasks made by a sample job: unusable outputs filtered out, tasks held for the
researcher's preview, then released to labelers or discarded.

- An output is unusable when it is empty (whitespace only) or mostly non-printable: under
  ``MIN_PRINTABLE`` of its characters are printable (Unicode categories other than C*, i.e.
  control, format, unassigned, private use and surrogates; tab and newline count as printable;
  U+FFFD, the decoder's replacement character, does not). Such outputs never reach a task.
- The sample job draws replacements for them (app/worker/runners.py `run_sample`); a prompt
  still left with fewer outputs than a ranking needs (``K_MIN``) gets no task.
- With ``hold_for_review`` (the default) the tasks are created ``held``: the queue serves only
  ``open`` tasks, so labelers see none until `release_sampled_tasks`; `discard_sampled_tasks`
  closes them (kept, with their outputs, for inspection; never served).
"""

from __future__ import annotations

import unicodedata
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from app.db import rows_matched
from app.models import (
    Completion,
    Job,
    JobStatus,
    Prompt,
    Task,
    TaskItem,
    TaskKind,
    TaskStatus,
    User,
)
from app.services import Conflict, Invalid, ServiceError
from app.services.completions import add_completions, create_ranking_task
from app.services.jobs import get_job

MIN_PRINTABLE = 0.8
PREVIEW_TASKS = 5


def unusable_reason(text: str) -> str | None:
    """Why an output cannot go to labelers ("empty", "mostly non-printable"), or None."""
    if not text.strip():
        return "empty"
    printable = sum(
        1
        for ch in text
        if ch in "\t\n\r" or (ch != "\ufffd" and not unicodedata.category(ch).startswith("C"))
    )
    if printable / len(text) < MIN_PRINTABLE:
        return "mostly non-printable"
    return None


def create_sampled_tasks(
    session: Session,
    job: Job,
    by_prompt: dict[int, list[dict[str, Any]]],
    *,
    overlap: int,
    hold: bool,
    creator: User | None,
) -> tuple[int, list[str]]:
    """One ranking task per prompt over its (already filtered) outputs: (how many, why the
    others got none: an output the PII scanner could not finish)."""
    status = TaskStatus.held.value if hold else TaskStatus.open.value
    made, problems = 0, []
    for prompt_id, items in by_prompt.items():
        try:
            completions = add_completions(session, prompt_id, items)
        except ServiceError as exc:
            problems.append(f"prompt {prompt_id}: no ranking task ({exc.detail})")
            continue
        create_ranking_task(
            session, prompt_id, [c.id for c in completions], overlap, job.id, creator, status=status
        )
        made += 1
    return made, problems


def _sample_job(session: Session, job_id: int) -> Job:
    job = get_job(session, job_id)
    if job.kind != "sample":
        raise Invalid(
            f"job {job_id} is a {job.kind} job; only sample jobs make tasks", field="job_id"
        )
    if job.status != JobStatus.succeeded.value:
        raise Conflict(
            f"job {job_id} is {job.status}; its tasks exist once it succeeded", field="job_id"
        )
    return job


def _move_held(session: Session, job_id: int, to: TaskStatus) -> int:
    _sample_job(session, job_id)
    moved = rows_matched(
        session.execute(
            update(Task)
            .where(Task.job_id == job_id, Task.status == TaskStatus.held.value)
            .values(status=to.value)
            .execution_options(synchronize_session=False)
        )
    )
    if not moved:
        raise Conflict(
            f"job {job_id} has no tasks held for review (already released or discarded)",
            field="job_id",
        )
    session.flush()
    return int(moved)


def release_sampled_tasks(session: Session, job_id: int) -> int:
    """Open a sample job's held tasks to labelers; returns how many."""
    return _move_held(session, job_id, TaskStatus.open)


def discard_sampled_tasks(session: Session, job_id: int) -> int:
    """Close a sample job's held tasks (never served); returns how many."""
    return _move_held(session, job_id, TaskStatus.closed)


def sample_preview(session: Session, job_id: int) -> dict[str, Any]:
    """What a sample job made: its tasks by status, and the first few with prompt and outputs."""
    counts = dict(
        session.execute(
            select(Task.status, func.count())
            .where(Task.job_id == job_id, Task.kind == TaskKind.ranking.value)
            .group_by(Task.status)
        ).all()
    )
    tasks = session.scalars(
        select(Task).where(Task.job_id == job_id).order_by(Task.id).limit(PREVIEW_TASKS)
    ).all()
    shown = []
    for task in tasks:
        prompt = session.get_one(Prompt, task.prompt_id)
        outputs = session.execute(
            select(Completion.text, Completion.origin)
            .join(TaskItem, TaskItem.completion_id == Completion.id)
            .where(TaskItem.task_id == task.id)
            .order_by(TaskItem.position)
        ).all()
        shown.append({"task": task, "prompt": prompt, "outputs": outputs})
    return {"counts": counts, "total": sum(counts.values()), "tasks": shown}
