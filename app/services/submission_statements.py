"""The statements of a submission (``labeling.submit``), built once with parameters and all in
Core: the hold's end, the task's lock and what the earlier labelers did, the write-back of the
task's tally and status, and (PostgreSQL) a ranking with its entries in one statement."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from functools import lru_cache
from typing import Any, cast

from sqlalchemy import (
    JSON,
    ColumnElement,
    CompoundSelect,
    Float,
    Integer,
    String,
    Table,
    Update,
    and_,
    bindparam,
    case,
    column,
    func,
    insert,
    literal_column,
    select,
    true,
    union_all,
    update,
)
from sqlalchemy.sql.dml import ReturningInsert, ReturningUpdate

from app.db import UTCDateTime, planned_for_any, sql_constant
from app.models import (
    AssignmentStatus,
    Ranking,
    RankingEntry,
    TaskStatus,
)
from app.services.judgment_scores import ranks_statement
from app.services.queue import ASSIGNMENTS
from app.services.task_kinds import slot_kinds
from app.services.task_view import TASKS

RANKINGS = cast(Table, Ranking.__table__)


RANKING_ENTRIES = cast(Table, RankingEntry.__table__)


@dataclass
class LockedTask:
    """A task as the submission's lock returned it (its fields are the columns the lock
    returns, in order). What the submission changes (agreement tally, adaptive overlap,
    status) is written back in one ``UPDATE`` (``write_back``)."""

    id: int
    kind: str
    prompt_id: int
    overlap: int
    overlap_added: int
    agreement_credit: float
    agreement_pairs: int
    status: str
    reference: dict[str, Any] | None

    def changed_since(self, row: Sequence[Any]) -> bool:
        return tuple(getattr(self, name) for name in LOCKED_COLUMNS) != tuple(row)


LOCKED_COLUMNS = tuple(field.name for field in fields(LockedTask))


@dataclass(frozen=True)
class EndedHold:
    """What a submission reads of the hold it ended (``UPDATE … RETURNING``)."""

    status: str
    labeler_id: int
    assigned_at: datetime
    display_order: list[int] | None


_ENDED_COLUMNS = tuple(field.name for field in fields(EndedHold))


@dataclass(frozen=True)
class _SubmitStatements:
    """``submit``'s statements, built once with parameters (building them anew cost more CPU
    than running them), all Core: no entity of the ORM is loaded or flushed on this path."""

    end_hold: ReturningUpdate[Any]
    lock: ReturningUpdate[Any]
    lock_of_skip: ReturningUpdate[Any]
    # PostgreSQL: the hold's end and the task's lock in one statement (``WITH ended AS …``)
    end_and_lock: ReturningUpdate[Any]
    end_and_lock_of_skip: ReturningUpdate[Any]
    after_lock: CompoundSelect[Any]
    write_back: Update


@lru_cache(maxsize=1)
def submit_statements() -> _SubmitStatements:
    end_hold = (
        update(ASSIGNMENTS)
        .where(
            ASSIGNMENTS.c.task_id == bindparam("of_task", type_=Integer),
            ASSIGNMENTS.c.labeler_id == bindparam("of_labeler", type_=Integer),
            ASSIGNMENTS.c.status == AssignmentStatus.active.value,
            ASSIGNMENTS.c.lock_expires_at > bindparam("now", type_=UTCDateTime()),
        )
        .values(
            status=bindparam("new_status", type_=String),
            finished_at=bindparam("now", type_=UTCDateTime()),
            skip_reason=bindparam("reason", type_=String),
        )
        .returning(*(ASSIGNMENTS.c[name] for name in _ENDED_COLUMNS))
    )
    # the kinds written out (a list bound as parameters is expanded into the text on every
    # execution: 5% of a submission's CPU)
    slot_kind = TASKS.c.kind.in_([sql_constant(k) for k in slot_kinds()])
    # serialises the submissions of one task, so exactly one of them marks it done; a task
    # of one labeler is done with this submission (nobody else can have submitted it)
    lock = update(TASKS).where(TASKS.c.id == bindparam("of_task", type_=Integer))
    returned = [TASKS.c[name] for name in LOCKED_COLUMNS]
    # PostgreSQL: ``UPDATE tasks … FROM ended`` after ``WITH ended AS (UPDATE assignments …)``:
    # the hold is ended (its row locked) first, as in two statements, then the task is locked;
    # no row when there was no live hold to end
    ended = end_hold.returning(ASSIGNMENTS.c.task_id).cte("ended")
    lock_after_end = update(TASKS).where(TASKS.c.id == ended.c.task_id)
    after_end = [*returned, *(ended.c[name].label(f"hold_{name}") for name in _ENDED_COLUMNS)]
    one_labeler_done = and_(TASKS.c.overlap <= 1, slot_kind)
    submitted = case((one_labeler_done, sql_constant(TaskStatus.done.value)), else_=TASKS.c.status)
    # a skip gives its slot back to another labeler at once (kinds served once to every
    # labeler hold none)
    freed = case((slot_kind, TASKS.c.filled - 1), else_=TASKS.c.filled)

    def finished(status: AssignmentStatus) -> ColumnElement[int]:
        is_it = case((ASSIGNMENTS.c.status == sql_constant(status.value), 1), else_=0)
        return func.coalesce(func.sum(is_it), 0)

    # after the lock, in one statement: what the earlier labelers of the task did (how many
    # submitted and skipped, for its status; their rankings' ranks, for agreement). It must
    # come after the lock: on PostgreSQL a statement that waited for the row still reads
    # with the snapshot it started with, without the submission it waited for
    after_lock: CompoundSelect[Any] = union_all(
        # ranking ids are positive: the row of id 0 is the counts
        select(
            literal_column("0"),
            finished(AssignmentStatus.submitted),
            finished(AssignmentStatus.skipped),
        ).where(ASSIGNMENTS.c.task_id == planned_for_any(bindparam("task_id", type_=Integer))),
        ranks_statement(),
    )
    write_back = (
        update(TASKS)
        .where(TASKS.c.id == bindparam("of_task", type_=Integer))
        .values(
            status=bindparam("new_status", type_=String),
            overlap=bindparam("new_overlap", type_=Integer),
            overlap_added=bindparam("new_overlap_added", type_=Integer),
            agreement_credit=bindparam("new_credit", type_=Float),
            agreement_pairs=bindparam("new_pairs", type_=Integer),
        )
    )
    return _SubmitStatements(
        end_hold=end_hold,
        lock=lock.values(status=submitted).returning(*returned),
        lock_of_skip=lock.values(filled=freed).returning(*returned),
        end_and_lock=lock_after_end.values(status=submitted).returning(*after_end),
        end_and_lock_of_skip=lock_after_end.values(filled=freed).returning(*after_end),
        after_lock=after_lock,
        write_back=write_back,
    )


# a new ranking's columns (its id and defaults aside), and each entry's (its ranking aside)
_NEW_RANKING = (
    "task_id",
    "prompt_id",
    "labeler_id",
    "k",
    "display_order",
    "time_spent_ms",
    "created_at",
    "gold_credit",
    "gold_pairs",
)


_ENTRY = ("completion_id", "rank", "likert", "flags")


@lru_cache(maxsize=1)
def ranking_with_entries() -> ReturningInsert[Any]:
    """PostgreSQL: a ranking and its entries in one statement (the ranking's ``INSERT …
    RETURNING id`` as a CTE, the entries selected from the JSON array ``entries``), one round
    trip instead of two; returns the ranking's id once per entry."""
    ranking = (
        insert(RANKINGS)
        .values({name: bindparam(name, type_=RANKINGS.c[name].type) for name in _NEW_RANKING})
        .returning(RANKINGS.c.id)
        .cte("new_ranking")
    )
    entries = (
        func.json_to_recordset(bindparam("entries", type_=JSON))
        .table_valued(*(column(name, RANKING_ENTRIES.c[name].type) for name in _ENTRY))
        .render_derived(with_types=True)
    )
    rows = select(ranking.c.id, *(entries.c[name] for name in _ENTRY)).select_from(
        ranking.join(entries, true())
    )
    return (
        insert(RANKING_ENTRIES)
        .from_select(["ranking_id", *_ENTRY], rows)
        .returning(RANKING_ENTRIES.c.ranking_id)
    )
