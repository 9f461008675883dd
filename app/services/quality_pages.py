"""What the gold and screening admin pages show besides the statistics: the screening set,
ranking tasks that could become gold, and the reference form of one task."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.models import Completion, Prompt, Ranking, Task, TaskItem, TaskKind, TaskStatus
from app.services import NotFound
from app.services.judgment_scores import reference_ranks
from app.services.task_kinds import reference_kinds, spec_of

CANDIDATES = 20


def screening_set(session: Session) -> dict[str, int]:
    """How many gold rankings and gold demonstrations labelers in screening receive."""
    rows = session.execute(
        select(Task.kind, func.count())
        .where(Task.screening.is_(True), Task.status == TaskStatus.open.value)
        .group_by(Task.kind)
    )
    counts = {"rankings": 0, "demonstrations": 0}
    for kind, n in rows:
        counts["rankings" if spec_of(kind).form == "ranking" else "demonstrations"] += n
    return counts


def gold_candidates(session: Session) -> list[dict[str, Any]]:
    """The newest ranking tasks still open or done (a closed one was unclear): candidates for
    gold, with how many rankings they have."""
    ranked = select(Ranking.task_id, func.count().label("n")).group_by(Ranking.task_id).subquery()
    rows = session.execute(
        select(Task.id, Task.status, Prompt.text, func.coalesce(ranked.c.n, 0))
        .join(Prompt, Prompt.id == Task.prompt_id)
        .outerjoin(ranked, ranked.c.task_id == Task.id)
        .where(Task.kind == TaskKind.ranking.value, Task.status != TaskStatus.closed.value)
        .order_by(Task.id.desc())
        .limit(CANDIDATES)
    )
    return [
        {"task_id": task_id, "status": status, "prompt": prompt, "rankings": n}
        for task_id, status, prompt, n in rows
    ]


def gold_task_form(
    session: Session, task_id: int, values: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The outputs of a ranking (or gold) task with the places and flags to show: what the
    researcher sent (after an error), else the task's current reference."""
    task = session.get(Task, task_id)
    if task is None or task.kind not in (TaskKind.ranking.value, *reference_kinds("ranking")):
        raise NotFound(f"no ranking task {task_id}", field="task_id")
    items = session.execute(
        select(Completion.id, Completion.text)
        .join(TaskItem, TaskItem.completion_id == Completion.id)
        .where(TaskItem.task_id == task.id)
        .order_by(TaskItem.position)
    )
    ranks = reference_ranks(task.reference) or {}
    stored_flags = (task.reference or {}).get("flags") or {}
    values = values or {}
    places = values.get("places") or {str(cid): str(rank) for cid, rank in ranks.items()}
    flags = values.get("flags") or {int(cid): names for cid, names in stored_flags.items()}
    rankings = session.scalar(select(func.count()).where(Ranking.task_id == task.id)) or 0
    return {
        "task_id": task.id,
        "is_gold": task.kind != TaskKind.ranking.value,
        "status": task.status,
        "prompt": session.get_one(Prompt, task.prompt_id).text,
        "rankings": rankings,
        "screening": values.get("screening", task.screening),
        "score_flags": values.get("score_flags", "flags" in (task.reference or {})),
        "outputs": [
            {
                "completion_id": cid,
                "text": text,
                "place": places.get(str(cid), ""),
                "flags": flags.get(cid, []),
            }
            for cid, text in items
        ],
    }
