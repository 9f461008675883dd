"""Rankings read back for quality figures: filters, loading with their entries, agreement.

Only kinds whose rankings are agreement data (``TaskKindSpec.agreement_data``: rankings and
gold rankings, which labelers cannot tell apart) count; evaluation judgments do not.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, func, select
from sqlalchemy.orm import Session

from app.config import get_settings
from app.models import FLAGS, Prompt, Ranking, RankingEntry, Task, User
from app.schemas.quality import QualityFilters
from app.services import Invalid
from app.services.agreement import AgreementReport, Judgment, summarize
from app.services.task_kinds import agreement_kinds
from app.services.use_cases import check_known_use_case

# ranking ids per query for their entries (well under every driver's parameter limit)
_CHUNK = 2000


@dataclass
class LoadedRanking:
    ranking_id: int
    task_id: int
    prompt_id: int
    labeler_id: int
    kind: str
    display_order: list[int]
    time_spent_ms: int | None
    created_at: datetime
    gold_credit: float | None
    gold_pairs: int | None
    ranks: dict[int, int] = field(default_factory=dict)
    likert: dict[int, int] = field(default_factory=dict)
    flags: dict[int, frozenset[str]] = field(default_factory=dict)

    def judgment(self) -> Judgment:
        return Judgment(dict(self.ranks), likert=self.likert, flags=self.flags)


def check_quality_filters(session: Session, filters: QualityFilters) -> QualityFilters:
    """``filters`` once the rules between fields and against the data hold (since before
    until: 422; a use case nobody knows: 404)."""
    if filters.since and filters.until and filters.since >= filters.until:
        raise Invalid("since must be earlier than until", field="since")
    if filters.use_case is not None:
        check_known_use_case(session, filters.use_case)
    return filters


def scope_conditions(time: Any, filters: QualityFilters) -> list[ColumnElement[bool]]:
    """The period (on the ``time`` column) and the use case (on the joined ``Prompt``)."""
    conditions: list[ColumnElement[bool]] = []
    if filters.since is not None:
        conditions.append(time >= filters.since)
    if filters.until is not None:
        conditions.append(time < filters.until)
    if filters.use_case is not None:
        conditions.append(Prompt.use_case == filters.use_case)
    return conditions


def ranking_conditions(filters: QualityFilters) -> list[ColumnElement[bool]]:
    """SQL conditions on ``Ranking`` (joined with its ``Task`` and ``Prompt``)."""
    conditions: list[ColumnElement[bool]] = [Task.kind.in_(agreement_kinds())]
    conditions += scope_conditions(Ranking.created_at, filters)
    if filters.group is not None:
        held_out = select(User.id).where(User.held_out.is_(filters.group == "held_out"))
        conditions.append(Ranking.labeler_id.in_(held_out))
    return conditions


def _rankings_query(conditions: Sequence[ColumnElement[bool]]) -> Select[*tuple[Any, ...]]:
    return (
        select(
            Ranking.id,
            Ranking.task_id,
            Ranking.prompt_id,
            Ranking.labeler_id,
            Task.kind,
            Ranking.display_order,
            Ranking.time_spent_ms,
            Ranking.created_at,
            Ranking.gold_credit,
            Ranking.gold_pairs,
        )
        .join(Task, Task.id == Ranking.task_id)
        .join(Prompt, Prompt.id == Ranking.prompt_id)
        .where(*conditions)
    )


def load_rankings(
    session: Session,
    conditions: Sequence[ColumnElement[bool]],
    *,
    newest_first: bool = False,
    limit: int | None = None,
) -> list[LoadedRanking]:
    """The rankings matching ``conditions``, with their ranks, Likert scores and flags."""
    query = _rankings_query(conditions).order_by(Ranking.id.desc() if newest_first else Ranking.id)
    if limit is not None:
        query = query.limit(limit)
    loaded = [LoadedRanking(*row) for row in session.execute(query)]
    by_id = {r.ranking_id: r for r in loaded}
    ids = list(by_id)
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        entries = session.execute(
            select(
                RankingEntry.ranking_id,
                RankingEntry.completion_id,
                RankingEntry.rank,
                RankingEntry.likert,
                RankingEntry.flags,
            ).where(RankingEntry.ranking_id.in_(chunk))
        )
        for ranking_id, completion_id, rank, likert, flags in entries:
            ranking = by_id[ranking_id]
            ranking.ranks[completion_id] = rank
            if likert is not None:
                ranking.likert[completion_id] = likert
            if flags:
                ranking.flags[completion_id] = frozenset(flags)
    return loaded


def shared_task_conditions(
    conditions: Sequence[ColumnElement[bool]],
) -> list[ColumnElement[bool]]:
    """``conditions`` narrowed to tasks with two or more matching rankings (the only ones that
    say anything about agreement)."""
    shared = (
        select(Ranking.task_id)
        .join(Task, Task.id == Ranking.task_id)
        .join(Prompt, Prompt.id == Ranking.prompt_id)
        .where(*conditions)
        .group_by(Ranking.task_id)
        .having(func.count() > 1)
    )
    return [*conditions, Ranking.task_id.in_(shared)]


def by_task(rankings: Iterable[LoadedRanking]) -> dict[int, dict[int, Judgment]]:
    tasks: dict[int, dict[int, Judgment]] = {}
    for ranking in rankings:
        tasks.setdefault(ranking.task_id, {})[ranking.labeler_id] = ranking.judgment()
    return tasks


def agreement_report(session: Session, filters: QualityFilters) -> AgreementReport:
    """Inter-annotator agreement over the tasks two or more matching labelers ranked, from
    their newest ``quality_window_rankings`` rankings (a task with one ranking left in the
    window drops out): every ranking of a large period is too many to load."""
    conditions = shared_task_conditions(ranking_conditions(filters))
    window = get_settings().quality_window_rankings
    rankings = load_rankings(session, conditions, newest_first=True, limit=window)
    return summarize(by_task(rankings), FLAGS)
