"""The task queue: which task a labeler gets next, held for them by a lock that expires.

Correctness under concurrency rests on the database, not on this process:
- a slot is taken by ``UPDATE tasks SET filled = filled + 1 WHERE id = ? AND filled < overlap``
  and the check constraint ``filled <= overlap`` backs it up, so no task gets more labelers
  than its overlap;
- ``unique (task_id, labeler_id)`` on assignments, demonstrations and rankings means one labeler
  holds and submits a task at most once;
- on PostgreSQL candidate tasks are read with ``FOR UPDATE SKIP LOCKED`` so concurrent labelers
  take different tasks instead of queueing on one row (only when every candidate is locked does
  a labeler wait for one, so a burst never hears "nothing waiting" while slots are left);
- on SQLite every transaction is ``BEGIN IMMEDIATE`` (see app/db.py): the whole assignment is
  serialised.
Lock order is always assignments, then tasks (here and in ``labeling.submit``), so the two
never deadlock.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any, Protocol, cast

from sqlalchemy import (
    ColumnElement,
    Integer,
    Select,
    Table,
    bindparam,
    case,
    exists,
    func,
    literal_column,
    null,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.orm import Session, aliased
from sqlalchemy.sql.dml import ReturningUpdate

from app.config import get_settings
from app.db import UTCDateTime, is_postgres, sql_constant, utcnow
from app.models import (
    Assignment,
    AssignmentStatus,
    LabelerStatus,
    Prompt,
    PromptStatus,
    Task,
    TaskItem,
    TaskStatus,
    User,
)
from app.services import Conflict, queue_upkeep
from app.services.task_kinds import (
    SHOWN_KINDS,
    LabelerTraits,
    eligibility,
    kinds_of_form,
    kinds_shown_as,
    parse_shown_kind,
    shown_kind_of,
    spec_of,
)
from app.services.task_view import QUEUE_VIEWS, TASKS, TaskView, task_view, view_columns

FINISHED = (AssignmentStatus.submitted.value, AssignmentStatus.skipped.value)


# a few retries cover the (PostgreSQL-only) case where a locked candidate filled up meanwhile
_MAX_ATTEMPTS = 5


_random = random.SystemRandom()


def parse_kind(kind: str | None) -> str | None:
    """``None``/empty for any kind, else a kind labelers may ask for (422 otherwise)."""
    return parse_shown_kind(kind)


def _needs_free_slot(kinds: Sequence[str]) -> bool:
    """Whether a task of ``kinds`` is open to one more labeler only with a free slot (any slot
    kind among them; a kind done once per labeler has none)."""
    return any(not spec_of(k).once_per_labeler for k in kinds)


def _open_for(labeler: LabelerTraits, kinds: list[str], task: type[Task] = Task) -> Select[Task]:
    """Tasks of ``kinds`` this labeler may take now: open, not theirs, not done by them, and
    eligible by their kind's rule; slot kinds need a free slot. ``task``: an alias of Task,
    for use as a subquery of a statement on tasks."""
    # per candidate, one probe of the unique (task_id, labeler_id) index: the queue reads
    # candidates in id order and stops at the first, however many tasks the labeler has done.
    # `+ 0` keeps it so: with a plain `task_id = tasks.id` PostgreSQL may merge-join instead
    # and read every hold the labeler ever had from that index (it did for the home's waiting
    # counts at a million prompts: 20-33 ms per kind for a labeler with 10,000 holds, against
    # well under 1 ms probed; an expression cannot be merge-joined on the index's order)
    mine = exists().where(
        Assignment.task_id == task.id + literal_column("0"),
        Assignment.labeler_id == labeler.id,
        Assignment.status != sql_constant(AssignmentStatus.expired.value),
    )
    # the fixed words as constants (see `sql_constant`): the claim's generic plan then reads
    # the partial index of open tasks
    query = (
        select(task)
        .join(Prompt, Prompt.id == task.prompt_id)
        .where(task.status == sql_constant(TaskStatus.open.value))
        .where(Prompt.status == sql_constant(PromptStatus.accepted.value))
        # a labeler never labels a prompt they wrote
        .where(or_(Prompt.author_id.is_(None), Prompt.author_id != labeler.id))
        .where(~mine)
        .where(eligibility(labeler, kinds, task))
    )
    if _needs_free_slot(kinds):
        query = query.where(task.filled < task.overlap)
    if labeler.labeler_status == LabelerStatus.screening.value:
        query = query.where(task.screening.is_(True))
    return query


def _pools(labeler: User, kind: str | None) -> tuple[list[str], list[str]]:
    """The kinds this labeler is served for a request of ``kind``, as (regular, gold): regular
    tasks take a slot; gold tasks (once per labeler) are mixed in at ``gold_rate``. A labeler in
    screening gets the screening set alone; a rejected one nothing."""
    kinds = kinds_shown_as(kind)
    regular = [k for k in kinds if not spec_of(k).once_per_labeler]
    gold = [k for k in kinds if spec_of(k).once_per_labeler]
    if labeler.labeler_status == LabelerStatus.rejected.value:
        return [], []
    if labeler.labeler_status == LabelerStatus.screening.value:
        return [], gold
    return regular, gold


def own_active_assignment(
    session: Session, labeler: User, kind: str | None, now: datetime | None = None
) -> Assignment | None:
    now = now or utcnow()
    query = (
        select(Assignment)
        .join(Task, Task.id == Assignment.task_id)
        .where(Assignment.labeler_id == labeler.id)
        .where(Assignment.status == AssignmentStatus.active.value)
        .where(Assignment.lock_expires_at > now)
        .where(Task.kind.in_(kinds_shown_as(kind)))
        .order_by(Assignment.assigned_at, Assignment.id)
        .limit(1)
    )
    return session.scalar(query)


def assign_next_task(session: Session, labeler: User, kind: str | None) -> Held | None:
    """Hold the next task for ``labeler`` (their own still-active one first), or None.

    The usual call (a free slot exists) is two statements: claim a slot (its RETURNING carries
    what the labeler will see), insert the hold. Queue upkeep (`queue_upkeep.maintain_queue`:
    expired holds released, demonstration tasks made) runs in the periodic job and when
    prompts arrive; here only when nothing was found, so a stale queue never answers "nothing
    waiting" wrongly. Does not commit: the caller commits, which releases the row lock.
    """
    kind = parse_kind(kind)
    now = utcnow()
    assignment = _next(session, labeler, kind, now)
    if assignment is None:
        # look again even when this upkeep changed nothing: the periodic sweep (or intake) may
        # have made the task between the first look and this one, and then it is ours to take
        queue_upkeep.maintain_queue(session, now, kind=kind)
        assignment = _next(session, labeler, kind, now)
    return assignment


def _next(session: Session, labeler: User, kind: str | None, now: datetime) -> Held | None:
    regular, gold = _pools(labeler, kind)
    # gold tasks only ever come mixed into the regular stream (or as the screening set)
    serve_gold = bool(gold) and (not regular or _random.random() < get_settings().gold_rate)
    if serve_gold:
        pick = _gold_statement(kind, tuple(gold), labeler.held_out, labeler.labeler_status)
        task_id = (
            session.connection().execute(pick, {"labeler_id": labeler.id, "now": now}).scalar()
        )
        if task_id is not None:
            return _hold(session, task_view(session, task_id), labeler, now)
    if regular:
        assignment = _take_slot(session, labeler, kind, regular, now)
        if assignment is not None:
            return assignment
    # nothing new is handed to a labeler who still holds a task: that one is theirs to finish
    return own_active_assignment(session, labeler, kind, now)


def _still_holding(
    labeler: LabelerTraits, kind: str | None, now: datetime | ColumnElement[datetime]
) -> Select[int]:
    """SQL: the labeler's live holds of ``kind`` (aliased, for use inside a statement on
    tasks)."""
    holds = aliased(Assignment)
    held_task = aliased(Task)
    return (
        select(holds.id)
        .join(held_task, held_task.id == holds.task_id)
        .where(
            holds.labeler_id == labeler.id,
            holds.status == sql_constant(AssignmentStatus.active.value),
            holds.lock_expires_at > now,
            held_task.kind.in_([sql_constant(k) for k in kinds_shown_as(kind)]),
        )
    )


# the parameters of the queue's prepared statements (see ``_slot_statements``)
LABELER_ID = bindparam("labeler_id", type_=Integer)


NOW = bindparam("now", type_=UTCDateTime())


@dataclass(frozen=True)
class _AnyLabeler:
    """Stands in for a labeler when a statement is built once for every labeler with the same
    traits: ``id`` is the ``labeler_id`` parameter."""

    held_out: bool
    labeler_status: str
    id: Any = LABELER_ID


@lru_cache(maxsize=64)
def _slot_statements(
    kind: str | None, kinds: tuple[str, ...], held_out: bool, labeler_status: str, postgres: bool
) -> tuple[list[ReturningUpdate[Any] | Select[Any]], Select[bool]]:
    """The claim statements (waiting for a locked candidate last; PostgreSQL only) and the
    "is anything left" check of ``_take_slot``, built once per shape with the labeler and the
    time as parameters: building them (aliases, eligibility) cost more CPU per request than
    all the queue's SQL took (issue 14's profile); SQLAlchemy reuses the compiled form.

    A claim is Core, not ORM, and returns what the labeler will see (the task's view, see
    ``view_columns``) with the slot: one statement, no entities to load. On PostgreSQL the
    claim also makes the hold, in the same statement (``_claim_and_hold``)."""
    labeler = _AnyLabeler(held_out=held_out, labeler_status=labeler_status)
    candidate = aliased(Task)
    base = _open_for(labeler, list(kinds), task=candidate).where(
        ~exists(_still_holding(labeler, kind, NOW))
    )
    # LIMIT 1 written out, as the constants: a generic plan does not know a bound limit is 1
    pick = base.with_only_columns(candidate.id).order_by(candidate.id).limit(literal_column("1"))
    claims: list[ReturningUpdate[Any] | Select[Any]] = []
    for skip_locked in [True, False] if postgres else [True]:
        chosen = pick.with_for_update(skip_locked=skip_locked, of=candidate).scalar_subquery()
        # every candidate may be locked by labelers being served this instant, with slots
        # left once they commit: then wait for one rather than answer "nothing waiting"
        # (PostgreSQL re-checks `filled < overlap` on the row it waited for)
        claim = (
            update(TASKS)
            .where(TASKS.c.id == chosen, TASKS.c.filled < TASKS.c.overlap)
            .values(filled=TASKS.c.filled + 1)
            .returning(*view_columns(postgres))
        )
        claims.append(_claim_and_hold(claim) if postgres else claim)
    return claims, select(exists(base))


# the hold's end, a parameter of the statements that make a hold
LOCK_UNTIL = bindparam("lock_until", type_=UTCDateTime())


def _claim_and_hold(claim: ReturningUpdate[Any]) -> Select[Any]:
    """PostgreSQL: the claim and the hold's upsert in one statement, one round trip instead
    of two (``WITH claimed AS (UPDATE tasks …), held AS (INSERT INTO assignments … SELECT
    FROM claimed ON CONFLICT …)``). Returns the claim's columns, and ``held_by``,
    ``held_until`` and ``held_order`` of the hold (NULL when the upsert found the labeler's
    hold of this task live: another request of theirs took it this instant). A ranking's
    outputs are shuffled here, in SQL (``ORDER BY random()``), as ``_hold`` does in Python."""
    claimed = claim.cte("claimed")
    ranking = claimed.c.kind.in_([sql_constant(k) for k in kinds_of_form("ranking")])
    shuffled = (
        select(func.json_agg(aggregate_order_by(TaskItem.completion_id, func.random())))
        .where(TaskItem.task_id == claimed.c.id)
        .scalar_subquery()
    )
    hold = select(
        claimed.c.id,
        LABELER_ID,
        claimed.c.kind,
        sql_constant(AssignmentStatus.active.value),
        NOW,
        LOCK_UNTIL,
        case((ranking, shuffled), else_=null()),
    )
    columns = [
        "task_id",
        "labeler_id",
        "task_kind",
        "status",
        "assigned_at",
        "lock_expires_at",
        "display_order",
    ]
    held = (
        _take_up_expired(postgresql.insert(ASSIGNMENTS).from_select(columns, hold))
        .returning(*_hold_returned())
        .cte("held")
    )
    return select(
        *claimed.c,
        held.c.labeler_id.label("held_by"),
        held.c.lock_expires_at.label("held_until"),
        held.c.display_order.label("held_order"),
    ).select_from(claimed.outerjoin(held, held.c.task_id == claimed.c.id))


@lru_cache(maxsize=64)
def _gold_statement(
    kind: str | None, kinds: tuple[str, ...], held_out: bool, labeler_status: str
) -> Select[int]:
    """The first gold task of ``kinds`` for a labeler who holds nothing of ``kind`` now,
    built once per shape (see ``_slot_statements``: building it cost 5 ms of CPU a draw)."""
    labeler = _AnyLabeler(held_out=held_out, labeler_status=labeler_status)
    return (
        _open_for(labeler, list(kinds))
        .where(~exists(_still_holding(labeler, kind, NOW)))
        .with_only_columns(Task.id)
        .order_by(Task.id)
        .limit(literal_column("1"))
    )


def _take_slot(
    session: Session, labeler: User, kind: str | None, kinds: list[str], now: datetime
) -> Hold | None:
    """Take a free slot of the first open task of ``kinds`` in one ``UPDATE … WHERE id =
    (SELECT … FOR UPDATE SKIP LOCKED) AND filled < overlap RETURNING`` (see the module's
    invariants); None when the labeler still holds a task of this kind, or none is free."""
    postgres = is_postgres(session)
    claims, anything_left = _slot_statements(
        kind, tuple(kinds), labeler.held_out, labeler.labeler_status, postgres
    )
    params: dict[str, Any] = {"labeler_id": labeler.id, "now": now}
    if postgres:
        params["lock_until"] = _lock_until(now)
    # Core on the session's connection: nothing of the ORM's is needed for these rows (the
    # session has nothing pending to flush on the labeler's path)
    connection = session.connection()
    if _still_drained(session, tuple(kinds)):
        return None
    for _ in range(_MAX_ATTEMPTS):
        for claim in claims:
            view = connection.execute(claim, params).first()
            if view is None:
                continue
            if not postgres:
                return _hold(session, TaskView.of(view), labeler, now)
            if view.held_by is None:
                raise _held_in_parallel()
            session.info.setdefault(QUEUE_VIEWS, {})[view.id] = TaskView.of(view)
            return Hold(view.id, view.held_by, view.held_until, view.held_order)
        if connection.execute(anything_left, params).scalar() is not True:
            _note_if_drained(session, tuple(kinds))
            return None
    return None


# the kinds whose queue this process last found without any open task (a round's last task
# done): their next searches first count the kind's open tasks, and search only when there is
# one. The claim's generic plan walks the open tasks in id order, expecting one of the kind
# soon, as PostgreSQL's statistics say; when a kind runs dry faster than autovacuum analyzes
# the table (the last 20,000 of 1.2 M rows, at a million prompts), the statistics still count
# thousands, and each of an empty next-task's six statements read every open task of the
# other kinds: seconds per next-task under load, until an ANALYZE (issue 14,
# docs/performance.md). The count has no order to keep and no early stop to bet on: it reads
# the (kind, status, id) index, 1.5 ms for none.
_found_drained: set[tuple[str, ...]] = set()


def forget_drained_kinds() -> None:
    _found_drained.clear()


def _still_drained(session: Session, kinds: tuple[str, ...]) -> bool:
    """Whether ``kinds`` were found drained and still have no open task (counted); when they
    have one again, they are searched as usual from now on."""
    if kinds not in _found_drained:
        return False
    if session.scalar(_open_tasks(kinds, counted=True)):
        _found_drained.discard(kinds)
        return False
    return True


def _note_if_drained(session: Session, kinds: tuple[str, ...]) -> None:
    """After a search of ``kinds`` found nothing: remember them drained when no task of
    theirs is open at all (not when this labeler alone has none left)."""
    if not session.scalar(_open_tasks(kinds, counted=False)):
        _found_drained.add(kinds)


@lru_cache(maxsize=64)
def _open_tasks(kinds: tuple[str, ...], counted: bool) -> Select[Any]:
    """How many tasks of ``kinds`` are open with a free slot (slot kinds) (``counted``), or
    whether any is: every task a claim could take is one of these. The count while a kind is
    known drained (cheap for none, whatever the statistics say); EXISTS to find that out (cheap
    when there are many: a labeler who did every open task)."""
    query = select(Task.id).where(
        Task.kind.in_([sql_constant(k) for k in kinds]),
        Task.status == sql_constant(TaskStatus.open.value),
    )
    if _needs_free_slot(kinds):
        query = query.where(Task.filled < Task.overlap)
    if counted:
        return select(func.count()).select_from(query.subquery())
    return select(exists(query))


class Held(Protocol):
    """A labeler's hold on a task, as the queue hands it out (``Hold``) or as stored
    (``Assignment``): what ``describe_assignment`` needs."""

    @property
    def task_id(self) -> int: ...

    @property
    def labeler_id(self) -> int: ...

    @property
    def lock_expires_at(self) -> datetime: ...

    @property
    def display_order(self) -> list[int] | None: ...


@dataclass(frozen=True)
class Hold:
    """The hold the queue just made (the upsert's RETURNING), without an ORM object."""

    task_id: int
    labeler_id: int
    lock_expires_at: datetime
    display_order: list[int] | None


ASSIGNMENTS = cast(Table, Assignment.__table__)


@lru_cache(maxsize=2)
def _hold_statement(postgres: bool) -> Any:
    """``_hold``'s upsert of the hold, built once (see ``_slot_statements``); Core, returning
    only what the labeler is told."""
    dialect = postgresql if postgres else sqlite
    upsert = dialect.insert(ASSIGNMENTS).values(
        task_id=bindparam("task_id"),
        labeler_id=bindparam("labeler_id"),
        task_kind=bindparam("task_kind"),
        status=AssignmentStatus.active.value,
        assigned_at=bindparam("now"),
        lock_expires_at=bindparam("lock_until"),
        display_order=bindparam("display_order"),
    )
    return _take_up_expired(upsert).returning(*_hold_returned())


def _hold_returned() -> list[ColumnElement[Any]]:
    """What a hold's upsert returns: the columns of ``Hold``."""
    return [ASSIGNMENTS.c[field.name] for field in fields(Hold)]


def _take_up_expired(
    upsert: postgresql.Insert | sqlite.Insert,
) -> postgresql.Insert | sqlite.Insert:
    """The hold's insert takes up the labeler's expired hold of the same task again (its
    order shown kept); a live one is left as it is (nothing returned)."""
    return upsert.on_conflict_do_update(
        index_elements=[ASSIGNMENTS.c.task_id, ASSIGNMENTS.c.labeler_id],
        set_={
            "status": AssignmentStatus.active.value,
            "assigned_at": upsert.excluded.assigned_at,
            "lock_expires_at": upsert.excluded.lock_expires_at,
            "finished_at": None,
        },
        # only an expired hold is taken up again; anything else is the same labeler taking
        # this task in a parallel request (two tabs)
        where=ASSIGNMENTS.c.status == AssignmentStatus.expired.value,
    )


def _lock_until(now: datetime) -> datetime:
    return now + timedelta(seconds=get_settings().task_lock_s)


def _held_in_parallel() -> Conflict:
    return Conflict("this task was just assigned to you in another request; retry")


def _hold(session: Session, view: TaskView, labeler: User, now: datetime) -> Hold:
    """Insert the hold (or take up again an expired hold of the same task, with the same
    order shown) in one upsert; the task's view is kept for ``describe_assignment``."""
    lock_until = _lock_until(now)
    order = None
    if spec_of(view.kind).form == "ranking":
        # randomised per labeler, so position bias averages out; stored with the ranking
        order = view.completion_ids
        _random.shuffle(order)
    params = {
        "task_id": view.task_id,
        "labeler_id": labeler.id,
        "task_kind": view.kind,
        "now": now,
        "lock_until": lock_until,
        "display_order": order,
    }
    row = session.connection().execute(_hold_statement(is_postgres(session)), params).first()
    if row is None:
        raise _held_in_parallel()
    session.info.setdefault(QUEUE_VIEWS, {})[view.task_id] = view
    return Hold(
        task_id=row.task_id,
        labeler_id=row.labeler_id,
        lock_expires_at=row.lock_expires_at,
        display_order=row.display_order,
    )


# the labeler home counts each kind's waiting tasks up to this many (shown as "100+"): an exact
# count read every open task of a million-prompt queue on each visit, and 1,000 took 40 ms
WAITING_UP_TO = 100


def _waiting(session: Session, labeler: User, kinds: list[str], up_to: int) -> int:
    """Open tasks of ``kinds`` this labeler could take, at most ``up_to + 1``; a kind known
    drained (``_found_drained``) is counted first, as the queue does."""
    if _still_drained(session, tuple(kinds)):
        return 0
    # LIMIT before counting, in queue order: PostgreSQL walks the open tasks' index (count
    # unordered, it merge-joined every task with every prompt)
    first = (
        _open_for(labeler, kinds)
        .with_only_columns(Task.id)
        .order_by(Task.id)
        .limit(up_to + 1)
        .subquery()
    )
    waiting = session.scalar(select(func.count()).select_from(first)) or 0
    if not waiting:
        _note_if_drained(session, tuple(kinds))
    return waiting


def waiting_counts(session: Session, labeler: User, up_to: int = WAITING_UP_TO) -> dict[str, int]:
    """Tasks of each kind (as labelers see kinds) this labeler could take now, their own active
    holds included, each at most ``up_to + 1`` (more than ``up_to``: "``up_to``+"). Gold tasks
    count only where they are all a labeler gets (screening). Read-only: demonstration tasks
    are made by intake and the periodic sweep, not by looking."""
    counts = dict.fromkeys(SHOWN_KINDS, 0)
    regular, gold = _pools(labeler, None)
    pool = regular or gold
    if not pool:
        return counts
    held = dict(
        session.execute(
            select(Task.kind, func.count())
            .join(Assignment, Assignment.task_id == Task.id)
            .where(
                Assignment.labeler_id == labeler.id,
                Assignment.status == AssignmentStatus.active.value,
                Assignment.lock_expires_at > utcnow(),
            )
            .group_by(Task.kind)
        ).all()
    )
    for shown in SHOWN_KINDS:
        kinds = [k for k in pool if shown_kind_of(k) == shown]
        if not kinds:
            continue
        waiting = _waiting(session, labeler, kinds, up_to)
        waiting += sum(held.get(k, 0) for k in kinds)
        counts[shown] = min(waiting, up_to + 1)
    return counts
