"""Gold tasks: rankings with a researcher's reference order (and flags), and prompts with a
reference demonstration, that labelers are measured against (docs/quality.md).

A gold ranking is served once to every labeler, mixed into their ranking stream at
``PREFLOOP_GOLD_RATE`` and indistinguishable from other rankings; its judgments never reach
training exports (app/services/task_kinds.py). ``screening`` puts a gold task in the set that
labelers in screening receive (gold demonstrations are only ever served in screening).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from app.models import (
    FLAGS,
    Assignment,
    AssignmentStatus,
    Prompt,
    Ranking,
    Task,
    TaskItem,
    TaskKind,
    TaskStatus,
    User,
)
from app.services import Conflict, Invalid, NotFound
from app.services.completions import accepted_prompt, checked_completions, create_ranking_task
from app.services.judgment_scores import rescore_task
from app.services.labeling_input import demonstration_text, validated_groups
from app.services.task_kinds import a_or_an, reference_kinds, spec_of


def validated_reference(
    completion_ids: Sequence[int],
    reference_ranking: list[list[int]],
    reference_flags: Mapping[int, Sequence[str]] | None,
) -> dict[str, Any]:
    """The stored reference ``{"ranking": [[id], ...], "flags": {"id": [...]}}``: a weak
    order over exactly the task's completions, flags from ``FLAGS``; 422 naming the field."""
    ranking = validated_groups(reference_ranking, list(completion_ids), field="reference_ranking")
    reference: dict[str, Any] = {"ranking": [list(group) for group in ranking]}
    if reference_flags is not None:
        flags: dict[str, list[str]] = {}
        for cid, names in reference_flags.items():
            if cid not in completion_ids:
                raise Invalid(
                    f"completion {cid} is not part of this task", field=f"reference_flags.{cid}"
                )
            unknown = [name for name in names if name not in FLAGS]
            if unknown:
                raise Invalid(
                    f"unknown flag(s) {unknown}; known flags: {', '.join(FLAGS)}",
                    field=f"reference_flags.{cid}",
                )
            # in the order labelers see them, once each
            flags[str(cid)] = [name for name in FLAGS if name in names]
        reference["flags"] = flags
    return reference


def create_gold_task(
    session: Session,
    prompt_id: int,
    completion_ids: Sequence[int],
    reference_ranking: list[list[int]],
    reference_flags: Mapping[int, Sequence[str]] | None = None,
    *,
    screening: bool = False,
    created_by: User | None = None,
) -> Task:
    """A new gold ranking task over completions of an accepted prompt (2..9 of them)."""
    ids = checked_completions(session, prompt_id, completion_ids, TaskKind.gold)
    reference = validated_reference(ids, reference_ranking, reference_flags)
    return create_ranking_task(
        session,
        prompt_id,
        ids,
        overlap=1,
        created_by=created_by,
        kind=TaskKind.gold,
        reference=reference,
        screening=screening,
    )


def make_gold(
    session: Session,
    task_id: int,
    reference_ranking: list[list[int]],
    reference_flags: Mapping[int, Sequence[str]] | None = None,
    *,
    screening: bool = False,
) -> Task:
    """Turn a ranking task into gold (or change a gold task's reference). The rankings it
    already has become gold judgments, scored against the reference, and leave the training
    data; from now on every labeler may judge it once."""
    task = session.get(Task, task_id, with_for_update=True)
    if task is None:
        raise NotFound(f"task {task_id} does not exist", field="task_id")
    if task.kind not in (TaskKind.ranking.value, *reference_kinds("ranking")):
        kind = a_or_an(spec_of(task.kind).title.lower())
        raise Invalid(
            f"task {task_id} is {kind} task; only ranking tasks can become gold", field="task_id"
        )
    if task.status == TaskStatus.closed.value:
        raise Conflict(
            f"task {task_id} is closed (withdrawn, or skipped as unclear); choose another",
            field="task_id",
        )
    ids = [item.completion_id for item in task.items]
    task.reference = validated_reference(ids, reference_ranking, reference_flags)
    task.kind = TaskKind.gold.value
    # the assignments' copy of the kind (the labeler's counts read it) follows
    session.execute(
        update(Assignment).where(Assignment.task_id == task.id).values(task_kind=task.kind)
    )
    task.screening = screening
    task.status = TaskStatus.open.value
    session.flush()
    rescore_task(session, task)
    return task


def create_gold_demonstration(
    session: Session, prompt_id: int, reference_text: str, *, created_by: User | None = None
) -> Task:
    """A prompt with a reference demonstration for the screening set."""
    accepted_prompt(session, prompt_id)
    text = demonstration_text(reference_text, field="reference_text")
    task = Task(
        kind=TaskKind.gold_demonstration.value,
        prompt_id=prompt_id,
        overlap=1,
        reference={"text": text},
        screening=True,
        created_by_id=created_by.id if created_by is not None else None,
    )
    session.add(task)
    session.flush()
    return task


def set_screening(session: Session, task_id: int, screening: bool) -> Task:
    task = session.get(Task, task_id)
    if task is None or spec_of(task.kind).reference is None:
        raise NotFound(f"no gold task {task_id}", field="task_id")
    if spec_of(task.kind).reference == "text" and not screening:
        raise Invalid("gold demonstrations are only served in screening", field="screening")
    task.screening = screening
    return task


def list_gold_tasks(session: Session) -> list[dict[str, Any]]:
    """Every gold task with how many labelers judged it and their mean score."""
    kinds = reference_kinds("ranking") + reference_kinds("text")
    judged = (
        select(Assignment.task_id, func.count().label("n"))
        .where(Assignment.status == AssignmentStatus.submitted.value)
        .group_by(Assignment.task_id)
        .subquery()
    )
    scores = (
        select(
            Ranking.task_id,
            func.sum(Ranking.gold_credit).label("credit"),
            func.sum(Ranking.gold_pairs).label("pairs"),
        )
        .where(Ranking.gold_pairs > 0)
        .group_by(Ranking.task_id)
        .subquery()
    )
    k = select(TaskItem.task_id, func.count().label("k")).group_by(TaskItem.task_id).subquery()
    rows = session.execute(
        select(
            Task.id,
            Task.kind,
            Task.screening,
            Task.status,
            Task.created_at,
            Prompt.text,
            func.coalesce(judged.c.n, 0),
            scores.c.credit,
            scores.c.pairs,
            k.c.k,
        )
        .join(Prompt, Prompt.id == Task.prompt_id)
        .outerjoin(judged, judged.c.task_id == Task.id)
        .outerjoin(scores, scores.c.task_id == Task.id)
        .outerjoin(k, k.c.task_id == Task.id)
        .where(Task.kind.in_(kinds))
        .order_by(Task.id.desc())
    ).all()
    return [
        {
            "task_id": r[0],
            "form": spec_of(r[1]).form,
            "screening": r[2],
            "status": r[3],
            "created_at": r[4],
            "prompt": r[5],
            "judgments": r[6],
            "mean_accuracy": (r[7] / r[8]) if r[8] else None,
            "k": r[9],
        }
        for r in rows
    ]
