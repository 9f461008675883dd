"""Screening decisions, the held-out group, and one labeler's record for a researcher.

A labeler in screening receives only the screening set (app/services/queue.py). A researcher
reads their scores (ranking agreement with the reference, flag agreement, demonstrations beside
the reference) and approves or rejects them; every decision is logged. A rejected labeler's
holds go back to the queue at once. Approved labelers can be put in the held-out group, whose
work never becomes training data.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import (
    Completion,
    Demonstration,
    LabelerStatus,
    Prompt,
    Ranking,
    Role,
    ScreeningDecision,
    Task,
    User,
)
from app.schemas.quality import QualityFilters
from app.services import Conflict, NotFound
from app.services.agreement import groups_from_ranks, pair_tally
from app.services.judgment_data import LoadedRanking, load_rankings
from app.services.judgment_scores import reference_ranks, task_agreement
from app.services.labeler_metrics import EXPLANATIONS, first_shown_best, is_untouched
from app.services.labeler_stats import FlagDecisions, group_of, labeler_stats
from app.services.queue_upkeep import release_holds_of
from app.services.task_kinds import reference_kinds, spec_of

RECENT = 20


def get_labeler(session: Session, labeler_id: int, *, for_update: bool = False) -> User:
    """A labeler account (404 for an unknown id or a researcher's account)."""
    user = session.get(User, labeler_id, with_for_update=for_update)
    if user is None or user.role != Role.labeler.value:
        raise NotFound(f"no labeler {labeler_id}", field="labeler_id")
    return user


def _decide(
    session: Session, labeler_id: int, status: LabelerStatus, by: User | None, note: str
) -> User:
    labeler = get_labeler(session, labeler_id, for_update=True)
    if labeler.labeler_status != status.value:
        labeler.labeler_status = status.value
        session.add(
            ScreeningDecision(
                labeler_id=labeler.id,
                decision=status.value,
                decided_by_id=by.id if by is not None else None,
                note=note.strip(),
            )
        )
    session.flush()
    return labeler


def approve(
    session: Session,
    labeler_id: int,
    by: User | None = None,
    note: str = "",
    held_out: bool | None = None,
) -> User:
    """Approve a labeler (idempotent): they receive every task from now on; ``held_out`` also
    sets their group."""
    labeler = _decide(session, labeler_id, LabelerStatus.approved, by, note)
    if held_out is not None:
        labeler.held_out = held_out
    return labeler


def reject(session: Session, labeler_id: int, by: User | None = None, note: str = "") -> User:
    """Reject a labeler (idempotent): they receive no task, and their holds are released."""
    labeler = _decide(session, labeler_id, LabelerStatus.rejected, by, note)
    release_holds_of(session, labeler.id)
    return labeler


def set_group(session: Session, labeler_id: int, group: str) -> User:
    """Put an approved labeler in the ``held_out`` or the ``training`` group."""
    labeler = get_labeler(session, labeler_id, for_update=True)
    if labeler.labeler_status != LabelerStatus.approved.value:
        raise Conflict(
            f"labeler {labeler_id} is {labeler.labeler_status}; approve them first",
            field="labeler_id",
        )
    labeler.held_out = group == "held_out"
    session.flush()
    return labeler


# one labeler's record ---------------------------------------------------------------------


def _texts(session: Session, completion_ids: set[int]) -> dict[int, str]:
    if not completion_ids:
        return {}
    rows = session.execute(
        select(Completion.id, Completion.text).where(Completion.id.in_(sorted(completion_ids)))
    )
    return dict(rows.all())


def _gold_rankings(session: Session, labeler: User) -> tuple[list[dict[str, Any]], FlagDecisions]:
    """Their gold rankings beside the reference (order, flags, the score of each), and their
    flag decisions beside the reference's over all of them."""
    loaded = load_rankings(
        session,
        [Ranking.labeler_id == labeler.id, Task.kind.in_(reference_kinds("ranking"))],
        newest_first=True,
    )
    tasks = {
        t.id: t
        for t in session.scalars(select(Task).where(Task.id.in_({r.task_id for r in loaded})))
    }
    prompts = dict(
        session.execute(
            select(Prompt.id, Prompt.text).where(Prompt.id.in_({r.prompt_id for r in loaded}))
        ).all()
    )
    texts = _texts(session, {cid for r in loaded for cid in r.ranks})
    result = []
    all_flags = FlagDecisions()
    for ranking in loaded:
        task = tasks[ranking.task_id]
        reference = task.reference or {}
        ref_ranks = reference_ranks(reference) or {}
        ref_flags = reference.get("flags")
        flags = FlagDecisions()
        if ref_flags is not None:
            flags.add(ranking, ref_flags)
            all_flags.add(ranking, ref_flags)
        tally = pair_tally(ranking.ranks, ref_ranks)
        result.append(
            {
                "task_id": task.id,
                "screening": task.screening,
                "prompt": prompts.get(ranking.prompt_id, ""),
                "created_at": ranking.created_at,
                "accuracy": tally.rate,
                "pairs": tally.pairs,
                "flag_accuracy": flags.accuracy,
                "outputs": [
                    {
                        "completion_id": cid,
                        "text": texts.get(cid, ""),
                        "rank": ranking.ranks.get(cid),
                        "reference_rank": ref_ranks.get(cid),
                        "flags": sorted(ranking.flags.get(cid, frozenset())),
                        "reference_flags": (ref_flags or {}).get(str(cid), []),
                    }
                    for cid in sorted(ref_ranks, key=lambda c: (ref_ranks[c], c))
                ],
            }
        )
    return result, all_flags


def _gold_demonstrations(session: Session, labeler: User) -> list[dict[str, Any]]:
    """Their demonstrations of gold prompts beside the reference demonstration."""
    rows = session.execute(
        select(Task.id, Task.reference, Prompt.text, Demonstration.text, Demonstration.created_at)
        .join(Task, Task.id == Demonstration.task_id)
        .join(Prompt, Prompt.id == Demonstration.prompt_id)
        .where(Demonstration.labeler_id == labeler.id)
        .where(Task.kind.in_(reference_kinds("text")))
        .order_by(Demonstration.id.desc())
    )
    return [
        {
            "task_id": task_id,
            "prompt": prompt,
            "text": text,
            "reference_text": (reference or {}).get("text", ""),
            "created_at": created_at,
        }
        for task_id, reference, prompt, text, created_at in rows
    ]


def _recent_rankings(session: Session, labeler: User) -> list[dict[str, Any]]:
    loaded: list[LoadedRanking] = load_rankings(
        session, [Ranking.labeler_id == labeler.id], newest_first=True, limit=RECENT
    )
    tasks = {
        t.id: t
        for t in session.scalars(select(Task).where(Task.id.in_({r.task_id for r in loaded})))
    }
    return [
        {
            "ranking_id": r.ranking_id,
            "task_id": r.task_id,
            "kind": r.kind,
            "title": spec_of(r.kind).title,
            "created_at": r.created_at,
            "seconds": r.time_spent_ms / 1000 if r.time_spent_ms is not None else None,
            "k": len(r.ranks),
            "order": groups_from_ranks(r.ranks),
            "shown": r.display_order,
            "likert": r.likert,
            "task_agreement": task_agreement(tasks[r.task_id]),
            "gold_accuracy": (r.gold_credit or 0.0) / r.gold_pairs if r.gold_pairs else None,
            "first_shown_best": first_shown_best(r.display_order, r.ranks) > 0,
            "untouched": is_untouched(r.display_order, r.ranks, r.likert),
        }
        for r in loaded
    ]


def _recent_demonstrations(session: Session, labeler: User) -> list[dict[str, Any]]:
    rows = session.execute(
        select(Demonstration.task_id, Prompt.text, Demonstration.text, Demonstration.created_at)
        .join(Prompt, Prompt.id == Demonstration.prompt_id)
        .where(Demonstration.labeler_id == labeler.id)
        .order_by(Demonstration.id.desc())
        .limit(RECENT)
    )
    return [
        {"task_id": task_id, "prompt": prompt, "text": text, "created_at": created_at}
        for task_id, prompt, text, created_at in rows
    ]


def labeler_record(session: Session, labeler_id: int) -> dict[str, Any]:
    """Everything a researcher needs to decide about one labeler (``GET /api/v1/labelers/{id}``
    and /admin/labelers/{id})."""
    # readable for every labeler account, and for anyone else who labeled (a researcher who
    # ranked some tasks is in the table too); decisions stay for labeler accounts
    labeler = session.get(User, labeler_id)
    rows = labeler_stats(session, QualityFilters())
    stats = next((row for row in rows if row["labeler_id"] == labeler_id), None)
    if labeler is None or stats is None:
        raise NotFound(f"no labeler {labeler_id}", field="labeler_id")
    gold, flags = _gold_rankings(session, labeler)
    decisions = session.execute(
        select(ScreeningDecision, User.username)
        .outerjoin(User, User.id == ScreeningDecision.decided_by_id)
        .where(ScreeningDecision.labeler_id == labeler.id)
        .order_by(ScreeningDecision.id.desc())
    )
    return {
        "labeler_id": labeler.id,
        "username": labeler.username,
        "role": labeler.role,
        "status": labeler.labeler_status,
        "group": group_of(labeler),
        "is_active": labeler.is_active,
        "stats": stats,
        "outlier_reasons": {name: EXPLANATIONS[name] for name in stats["outliers"]},
        "screening": {
            "gold_accuracy": stats["gold_accuracy"],
            "gold_judgments": stats["gold_judgments"],
            "flag_accuracy": flags.accuracy,
            "flag_kappa": flags.kappa,
            "gold_rankings": gold,
            "demonstrations": _gold_demonstrations(session, labeler),
        },
        "recent": {
            "rankings": _recent_rankings(session, labeler),
            "demonstrations": _recent_demonstrations(session, labeler),
        },
        "decisions": [
            {
                "decision": d.decision,
                "by": username,
                "note": d.note,
                "at": d.created_at,
            }
            for d, username in decisions
        ],
    }
