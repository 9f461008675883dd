"""The ``consensus`` format of the comparisons export: one ranking per task, aggregated from
the rankings that pass the export's filters by the Borda count with ties
(app/services/consensus.py), keyset-paginated on the task id (the resume cursor ``after``).

A record: ``{"task_id", "prompt_id", "prompt", "split", "use_case", "k", "labeler_ids",
"agreement", "completions": [{"completion_id", "text", "rank", "borda"}]}``, completions best
first; ``rank`` is the consensus place (equal Borda scores tie), ``agreement`` the pairwise
agreement among the aggregated rankings (null with one). Trainers read it like a ranking.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.models import Completion, Ranking, RankingEntry
from app.schemas.export import ExportFilters
from app.services.agreement import Tally, pair_tally
from app.services.consensus import borda_scores, consensus_groups
from app.services.export_queries import base_query

# tasks per page
PAGE_SIZE = 200


def count_consensus(session: Session, filters: ExportFilters, after: int) -> int:
    rankings = base_query("comparisons", filters).subquery()
    query = select(func.count(func.distinct(rankings.c.task_id))).where(rankings.c.task_id > after)
    return session.scalar(query) or 0


def _ranks(session: Session, ranking_ids: list[int]) -> dict[int, dict[int, int]]:
    rows = session.execute(
        select(RankingEntry.ranking_id, RankingEntry.completion_id, RankingEntry.rank).where(
            RankingEntry.ranking_id.in_(ranking_ids)
        )
    )
    ranks: dict[int, dict[int, int]] = {rid: {} for rid in ranking_ids}
    for ranking_id, completion_id, rank in rows:
        ranks[ranking_id][completion_id] = rank
    return ranks


def _record(
    rows: list[Any], ranks: dict[int, dict[int, int]], texts: dict[int, str]
) -> dict[str, Any]:
    orders = [ranks[r.id] for r in rows]
    scores = borda_scores(orders)
    tally = Tally()
    for i, a in enumerate(orders):
        for b in orders[i + 1 :]:
            tally += pair_tally(a, b)
    first = rows[0]
    return {
        "task_id": first.task_id,
        "prompt_id": first.prompt_id,
        "prompt": first.text,
        "split": first.split,
        "use_case": first.use_case,
        "k": len(scores),
        "labeler_ids": sorted(r.labeler_id for r in rows),
        "agreement": tally.rate,
        "completions": [
            {"completion_id": cid, "text": texts[cid], "rank": place, "borda": scores[cid]}
            for place, group in enumerate(consensus_groups(scores), start=1)
            for cid in sorted(group)
        ],
    }


def consensus_records(
    session: Session, filters: ExportFilters, after: int
) -> Iterator[dict[str, Any]]:
    """One record per task with at least one ranking passing ``filters``, after task ``after``."""
    base = base_query("comparisons", filters)
    rankings = base.subquery()
    last = after
    while True:
        task_ids = list(
            session.scalars(
                select(rankings.c.task_id)
                .where(rankings.c.task_id > last)
                .group_by(rankings.c.task_id)
                .order_by(rankings.c.task_id)
                .limit(PAGE_SIZE)
            )
        )
        if not task_ids:
            return
        rows = session.execute(base.where(Ranking.task_id.in_(task_ids))).all()
        ranks = _ranks(session, [r.id for r in rows])
        wanted = sorted({cid for order in ranks.values() for cid in order})
        texts = dict(
            session.execute(
                select(Completion.id, Completion.text).where(Completion.id.in_(wanted))
            ).all()
        )
        by_task: dict[int, list[Any]] = {}
        for row in rows:
            by_task.setdefault(row.task_id, []).append(row)
        for task_id in task_ids:
            yield _record(by_task[task_id], ranks, texts)
        last = task_ids[-1]
