"""Scores kept with the judgments as they arrive, and adaptive overlap.

At each ranking submitted (``labeling.submit``, under the task's row lock, so concurrent
submissions of one task are serialised):
- the task's agreement tally grows by the new ranking's pairwise agreement with every earlier
  ranking of the task (``tasks.agreement_credit / agreement_pairs``: all labeler pairs pooled);
- a ranking of a gold task gets its agreement with the reference order
  (``rankings.gold_credit / gold_pairs``), which gold accuracy and the export filter read.

Adaptive overlap: when the last of a task's ``overlap`` labelers submits and the task's kind
allows it (``TaskKindSpec.adaptive_overlap``), a task whose labelers agree less than
``adaptive_agreement_min`` gets one more slot, up to ``adaptive_overlap_max`` labelers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any, cast

from sqlalchemy import Integer, Select, Table, bindparam, func, select
from sqlalchemy.orm import Session

from app.db import planned_for_any
from app.models import Ranking, RankingEntry, Task
from app.services.agreement import Tally, pair_tally, ranks_from_groups
from app.services.labeling_settings import overlap_settings
from app.services.task_kinds import spec_of


def reference_ranks(reference: Mapping[str, Any] | None) -> dict[int, int] | None:
    """The reference weak order of a gold task as ranks, or None."""
    if not reference or not reference.get("ranking"):
        return None
    groups: list[list[int]] = reference["ranking"]
    return {int(cid): rank for cid, rank in ranks_from_groups(groups).items()}


@lru_cache(maxsize=1)
def ranks_statement() -> Select[int, int, int]:
    """SQL: the ranks of every ranking of the task ``task_id`` (ranking id, completion id,
    rank). Built once, Core on the tables: the submission of a shared task reads it (as part of
    its statement after the task's lock), and the ORM's compile step cost more than the read."""
    entries, rankings = cast(Table, RankingEntry.__table__), cast(Table, Ranking.__table__)
    return (
        select(entries.c.ranking_id, entries.c.completion_id, entries.c.rank)
        .join(rankings, rankings.c.id == entries.c.ranking_id)
        .where(rankings.c.task_id == planned_for_any(bindparam("task_id", type_=Integer)))
    )


def _ranks_by_ranking(session: Session, task_id: int) -> dict[int, dict[int, int]]:
    """The task's stored rankings as ranks by completion. Callers flush first what the read
    must see (a ranking is inserted in Core, after this read, by ``labeling.submit``)."""
    rows = session.connection().execute(ranks_statement(), {"task_id": task_id})
    by_ranking: dict[int, dict[int, int]] = {}
    for ranking_id, completion_id, rank in rows:
        by_ranking.setdefault(ranking_id, {})[completion_id] = rank
    return by_ranking


def agreement_with_earlier(new: dict[int, int], earlier: Iterable[dict[int, int]]) -> Tally:
    """What a new ranking (its ranks) adds to its task's agreement tally: its pairwise
    agreement with each earlier ranking of the task. The caller holds the task's row lock and
    read the earlier rankings after taking it."""
    return sum((pair_tally(new, other) for other in earlier), Tally())


def gold_score(kind: str, reference: Mapping[str, Any] | None, new: dict[int, int]) -> Tally | None:
    """A ranking's agreement with its gold task's reference order; None for other tasks."""
    ranks = reference_ranks(reference)
    if ranks is None or spec_of(kind).reference != "ranking":
        return None
    return pair_tally(new, ranks)


def rescore_task(session: Session, task: Task) -> None:
    """Recompute a task's agreement tally and its rankings' gold scores from scratch (after
    its reference changed, or it became a gold task)."""
    session.flush()  # the read below is Core: it sees only what was flushed
    by_ranking = _ranks_by_ranking(session, task.id)
    ids = sorted(by_ranking)
    tally = Tally()
    for i, a in enumerate(ids):
        for b in ids[i + 1 :]:
            tally += pair_tally(by_ranking[a], by_ranking[b])
    task.agreement_credit, task.agreement_pairs = tally.credit, tally.pairs
    reference = reference_ranks(task.reference)
    is_gold = spec_of(task.kind).reference == "ranking"
    for ranking in session.scalars(select(Ranking).where(Ranking.task_id == task.id)):
        if reference is not None and is_gold:
            gold = pair_tally(by_ranking.get(ranking.id, {}), reference)
            ranking.gold_credit, ranking.gold_pairs = gold.credit, gold.pairs
        else:
            ranking.gold_credit = ranking.gold_pairs = None
    session.flush()


def task_agreement(task: Task) -> float | None:
    """The pooled pairwise agreement among the task's labelers (None with fewer than two)."""
    return Tally(task.agreement_credit or 0.0, task.agreement_pairs or 0).rate


def one_more_labeler(session: Session, kind: str, agreement: Tally, overlap: int) -> bool:
    """Adaptive overlap, when ``overlap`` labelers have submitted a task of ``kind``: whether
    their ``agreement`` is low enough for one more labeler (and the task may still grow). The
    caller holds the task's row lock and adds the slot."""
    if not spec_of(kind).adaptive_overlap or agreement.rate is None:
        return False
    settings = overlap_settings(session)
    return (
        agreement.rate < settings.adaptive_agreement_min and overlap < settings.adaptive_overlap_max
    )


def gold_accuracy_by_labeler(session: Session) -> dict[int, float]:
    """Every labeler's gold accuracy: their gold rankings' agreement with the references,
    pooled (credits over pairs). Labelers without a scored gold ranking are absent."""
    rows = session.execute(
        select(Ranking.labeler_id, func.sum(Ranking.gold_credit), func.sum(Ranking.gold_pairs))
        .where(Ranking.gold_pairs > 0)
        .group_by(Ranking.labeler_id)
    )
    return {labeler_id: float(credit or 0.0) / pairs for labeler_id, credit, pairs in rows if pairs}


def labelers_with_gold_accuracy(minimum: float) -> Select[int]:
    """SQL: the ids of labelers whose gold accuracy is at least ``minimum``."""
    return (
        select(Ranking.labeler_id)
        .where(Ranking.gold_pairs > 0)
        .group_by(Ranking.labeler_id)
        .having(func.sum(Ranking.gold_credit) >= minimum * func.sum(Ranking.gold_pairs))
    )
