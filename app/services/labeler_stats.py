"""Per-labeler statistics (``GET /api/v1/labelers/stats``, /admin/quality), each defined in
docs/quality.md: volume, speed, skips, gold accuracy, agreement with others, position bias,
contradictions between rank and Likert score, and untouched submissions; plus the outliers.

Counts and sums (rankings, gold accuracy, demonstrations, finished tasks and skips) are
aggregated in SQL over the whole period. The figures that need each ranking's entries (speed,
position bias, contradictions, untouched, flag agreement, agreement with others) come from
the period's newest ``quality_window_rankings`` rankings (20,000 by default): loading all of
them took 100 s and a gigabyte at 500,000 rankings.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, case, func, or_, select
from sqlalchemy.orm import Session

from app.config import get_settings
from app.models import (
    FLAGS,
    Assignment,
    AssignmentStatus,
    Demonstration,
    Prompt,
    Ranking,
    Role,
    Task,
    User,
)
from app.schemas.quality import QualityFilters
from app.services.agreement import Tally, agreement_by_labeler, cohen_kappa
from app.services.judgment_data import (
    LoadedRanking,
    by_task,
    load_rankings,
    ranking_conditions,
    scope_conditions,
)
from app.services.labeler_metrics import (
    contradictions,
    excess_z,
    first_shown_best,
    is_untouched,
    outliers,
    team_medians,
)
from app.services.task_kinds import kinds_of_form, reference_kinds


def group_of(user: User) -> str:
    return "held_out" if user.held_out else "training"


@dataclass
class FlagDecisions:
    """Yes/no flag decisions of a labeler beside the reference's, one per (output, flag)."""

    labeler: list[bool] = field(default_factory=list)
    reference: list[bool] = field(default_factory=list)

    def add(self, ranking: LoadedRanking, reference_flags: dict[str, list[str]]) -> None:
        for cid in ranking.ranks:
            given = ranking.flags.get(cid, frozenset())
            expected = set(reference_flags.get(str(cid), []))
            for name in FLAGS:
                self.labeler.append(name in given)
                self.reference.append(name in expected)

    @property
    def accuracy(self) -> float | None:
        if not self.labeler:
            return None
        same = sum(a == b for a, b in zip(self.labeler, self.reference, strict=True))
        return same / len(self.labeler)

    @property
    def kappa(self) -> float | None:
        return cohen_kappa(self.labeler, self.reference)


def gold_references(session: Session, task_ids: Iterable[int]) -> dict[int, dict[str, Any]]:
    """The reference of every gold ranking task among ``task_ids``."""
    ids = set(task_ids)
    if not ids:
        return {}
    # every gold task (researchers write them by hand: few), not an IN list of ``task_ids``,
    # which passed PostgreSQL's 65,535 parameters at 270,000 rankings
    rows = session.execute(
        select(Task.id, Task.reference).where(
            Task.kind.in_(reference_kinds("ranking")), Task.reference.is_not(None)
        )
    )
    return {task_id: reference for task_id, reference in rows if reference and task_id in ids}


@dataclass
class _Figures:
    rankings: int = 0
    seconds: list[float] = field(default_factory=list)
    first_best: float = 0.0
    expected_first_best: float = 0.0
    variance_first_best: float = 0.0
    contradicting: int = 0
    likert_pairs: int = 0
    untouched: int = 0
    flags: FlagDecisions = field(default_factory=FlagDecisions)

    def add(self, ranking: LoadedRanking, reference: dict[str, Any] | None) -> None:
        """One ranking of the window (counts and gold accuracy come from `_ranking_totals`)."""
        self.rankings += 1
        if ranking.time_spent_ms is not None:
            self.seconds.append(ranking.time_spent_ms / 1000)
        shown = ranking.display_order or sorted(ranking.ranks)
        self.first_best += first_shown_best(shown, ranking.ranks)
        chance = 1 / max(len(ranking.ranks), 1)
        self.expected_first_best += chance
        self.variance_first_best += chance * (1 - chance)
        c, n = contradictions(ranking.ranks, ranking.likert)
        self.contradicting += c
        self.likert_pairs += n
        self.untouched += is_untouched(shown, ranking.ranks, ranking.likert)
        if reference is not None and reference.get("flags") is not None:
            self.flags.add(ranking, reference["flags"])


def _ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator else None


def _median(values: Sequence[float]) -> float | None:
    return float(statistics.median(values)) if values else None


def _labelers(session: Session, filters: QualityFilters, active: set[int]) -> list[User]:
    """Labelers (and anyone else who labeled in the period) in the filters' group."""
    conditions: list[ColumnElement[bool]] = [
        or_(User.role == Role.labeler.value, User.id.in_(sorted(active)))
    ]
    if filters.group is not None:
        conditions.append(User.held_out.is_(filters.group == "held_out"))
    return list(session.scalars(select(User).where(*conditions).order_by(User.id)))


def _demonstrations(
    session: Session, filters: QualityFilters
) -> dict[int, tuple[int, list[float]]]:
    """Per labeler: demonstrations written and their seconds."""
    conditions = [
        Task.kind.in_(kinds_of_form("demonstration")),
        *scope_conditions(Demonstration.created_at, filters),
    ]
    rows = session.execute(
        select(Demonstration.labeler_id, Demonstration.time_spent_ms)
        .join(Task, Task.id == Demonstration.task_id)
        .join(Prompt, Prompt.id == Demonstration.prompt_id)
        .where(*conditions)
    )
    result: dict[int, tuple[int, list[float]]] = {}
    for labeler_id, ms in rows:
        count, seconds = result.get(labeler_id, (0, []))
        if ms is not None:
            seconds.append(ms / 1000)
        result[labeler_id] = (count + 1, seconds)
    return result


@dataclass
class _Totals:
    rankings: int = 0
    gold_judgments: int = 0
    gold: Tally = field(default_factory=Tally)


def _ranking_totals(
    session: Session, conditions: Sequence[ColumnElement[bool]]
) -> dict[int, _Totals]:
    """Per labeler, over the whole period in SQL: rankings, gold judgments and gold credit."""
    rows = session.execute(
        select(
            Ranking.labeler_id,
            func.count(),
            func.count(Ranking.gold_pairs),
            func.sum(
                case((Ranking.gold_pairs.is_not(None), func.coalesce(Ranking.gold_credit, 0)))
            ),
            func.sum(Ranking.gold_pairs),
        )
        .join(Task, Task.id == Ranking.task_id)
        .join(Prompt, Prompt.id == Ranking.prompt_id)
        .where(*conditions)
        .group_by(Ranking.labeler_id)
    )
    return {
        labeler_id: _Totals(int(n), int(golds), Tally(float(credit or 0.0), int(pairs or 0)))
        for labeler_id, n, golds, credit, pairs in rows
    }


def _finished(session: Session, filters: QualityFilters) -> dict[int, tuple[int, int]]:
    """Per labeler: (tasks finished, of which skipped), by the time they finished."""
    skipped = AssignmentStatus.skipped.value
    conditions: list[ColumnElement[bool]] = [
        Assignment.status.in_([AssignmentStatus.submitted.value, skipped])
    ]
    if filters.since is not None:
        conditions.append(Assignment.finished_at >= filters.since)
    if filters.until is not None:
        conditions.append(Assignment.finished_at < filters.until)
    query = select(
        Assignment.labeler_id,
        func.count(),
        func.sum(case((Assignment.status == skipped, 1), else_=0)),
    )
    if filters.use_case is not None:
        query = query.join(Task, Task.id == Assignment.task_id).join(
            Prompt, Prompt.id == Task.prompt_id
        )
        conditions.append(Prompt.use_case == filters.use_case)
    rows = session.execute(query.where(*conditions).group_by(Assignment.labeler_id))
    return {labeler_id: (int(total), int(skips or 0)) for labeler_id, total, skips in rows}


def labeler_stats(session: Session, filters: QualityFilters) -> list[dict[str, Any]]:
    """One row per labeler, by labeler id, with the figures of docs/quality.md."""
    conditions = ranking_conditions(filters)
    totals = _ranking_totals(session, conditions)
    window = get_settings().quality_window_rankings
    rankings = load_rankings(session, conditions, newest_first=True, limit=window)
    references = gold_references(session, (r.task_id for r in rankings))
    figures: dict[int, _Figures] = defaultdict(_Figures)
    for ranking in rankings:
        figures[ranking.labeler_id].add(ranking, references.get(ranking.task_id))
    shared = {
        task_id: judgments for task_id, judgments in by_task(rankings).items() if len(judgments) > 1
    }
    with_others = agreement_by_labeler(shared)
    demonstrations = _demonstrations(session, filters)
    finished = _finished(session, filters)
    active = set(totals) | set(demonstrations) | set(finished)
    rows = []
    for user in _labelers(session, filters, active):
        f = figures.get(user.id, _Figures())
        total_rankings = totals.get(user.id, _Totals())
        demos, demo_seconds = demonstrations.get(user.id, (0, []))
        total, skips = finished.get(user.id, (0, 0))
        others = with_others.get(user.id, Tally())
        rows.append(
            {
                "labeler_id": user.id,
                "username": user.username,
                "group": group_of(user),
                "status": user.labeler_status,
                "rankings": total_rankings.rankings,
                "demonstrations": demos,
                "median_seconds": _median(f.seconds),
                "median_demonstration_seconds": _median(demo_seconds),
                "skip_rate": _ratio(skips, total),
                "finished": total,
                "gold_accuracy": total_rankings.gold.rate,
                "gold_judgments": total_rankings.gold_judgments,
                "flag_kappa": f.flags.kappa,
                "agreement_with_others": others.rate,
                "agreement_pairs": others.pairs,
                "position_bias": _ratio(f.first_best, f.expected_first_best),
                "position_bias_z": excess_z(
                    f.first_best, f.expected_first_best, f.variance_first_best
                ),
                "contradiction_rate": _ratio(f.contradicting, f.likert_pairs),
                "likert_pairs": f.likert_pairs,
                "untouched_rate": _ratio(f.untouched, f.rankings),
            }
        )
    medians = team_medians(rows)
    for row in rows:
        row["outliers"] = outliers(row, medians)
    return rows
