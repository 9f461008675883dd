"""Queue upkeep off the labelers' path: expired holds released (their slots given back) and the
missing demonstration tasks made, by the periodic sweep, after intake, and by the queue when it
finds nothing (``maintain_queue``); the open tasks counted for the loop's status page."""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import datetime

from sqlalchemy import (
    ColumnElement,
    Select,
    case,
    exists,
    func,
    literal,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from app.config import get_settings
from app.db import UTCDateTime, is_postgres, utcnow
from app.models import (
    Assignment,
    AssignmentStatus,
    Prompt,
    PromptStatus,
    Task,
    TaskKind,
    TaskStatus,
)
from app.services.labeling_settings import overlap_settings
from app.services.task_kinds import slot_kinds


def release_expired_locks(session: Session, now: datetime | None = None) -> int:
    """Mark active assignments past their lock as expired and give their slots back."""
    return _release(session, Assignment.lock_expires_at <= (now or utcnow()))


def release_holds_of(session: Session, labeler_id: int) -> int:
    """End a labeler's active holds (they may no longer work, e.g. rejected in screening) and
    give the slots back to the queue."""
    return _release(session, Assignment.labeler_id == labeler_id)


def _release(session: Session, condition: ColumnElement[bool]) -> int:
    rows = session.execute(
        select(Assignment.id, Assignment.task_id, Task.kind)
        .join(Task, Task.id == Assignment.task_id)
        .where(Assignment.status == AssignmentStatus.active.value)
        .where(condition)
        .order_by(Assignment.id)
        # another labeler releasing the same rows right now: leave them to it
        .with_for_update(skip_locked=True, of=Assignment)
    ).all()
    if not rows:
        return 0
    session.execute(
        update(Assignment)
        .where(Assignment.id.in_([r.id for r in rows]))
        .values(status=AssignmentStatus.expired.value)
    )
    # kinds served once to every labeler hold no slot to give back
    slots = set(slot_kinds())
    freed = Counter(r.task_id for r in rows if r.kind in slots)
    for task_id, count in sorted(freed.items()):
        session.execute(update(Task).where(Task.id == task_id).values(filled=Task.filled - count))
    return len(rows)


def _missing_demonstration_tasks() -> Select[int]:
    """Accepted prompts of the SFT data set's splits that have no demonstration task yet."""
    settings = get_settings()
    has_task = exists().where(
        Task.prompt_id == Prompt.id, Task.kind == TaskKind.demonstration.value
    )
    return (
        select(Prompt.id)
        .where(Prompt.status == PromptStatus.accepted.value)
        .where(Prompt.split.in_(settings.demonstration_splits))
        .where(~has_task)
    )


def ensure_demonstration_tasks(session: Session, ids: tuple[int, int] | None = None) -> int:
    """Create the missing demonstration tasks in one idempotent ``INSERT ... SELECT``; with
    ``ids`` (lowest, highest), only for the prompts in that id range.

    Called by the periodic sweep and when the queue finds nothing (all prompts), and by intake
    for the id range it just stored: a primary-key range scan instead of an anti-join over every
    prompt, which PostgreSQL plans as a nested loop while a freshly filled table has no
    statistics yet (0.9 s per ingest request at 10,000 prompts). The partial unique index on
    (prompt_id) for demonstration tasks plus ``ON CONFLICT DO NOTHING`` makes concurrent calls
    safe.
    """
    missing = _missing_demonstration_tasks()
    if ids is not None:
        missing = missing.where(Prompt.id.between(*ids))
    # cheap read first: the insert (which may wait on a concurrent one) only when needed
    if session.scalar(select(exists(missing))) is not True:
        return 0
    settings = overlap_settings(session)
    share_pct = round(settings.agreement_share * 100)
    overlap = case((Prompt.id % 100 < share_pct, settings.agreement_overlap), else_=1)
    rows = missing.add_columns(
        literal(TaskKind.demonstration.value),
        overlap,
        literal(0),
        literal(TaskStatus.open.value),
        literal(utcnow(), UTCDateTime()),
    ).order_by(Prompt.id)
    dialect = postgresql if is_postgres(session) else sqlite
    stmt = (
        dialect.insert(Task)
        .from_select(["prompt_id", "kind", "overlap", "filled", "status", "created_at"], rows)
        .on_conflict_do_nothing()
        .returning(Task.id)
    )
    return len(session.execute(stmt).all())


def open_task_counts(session: Session) -> dict[str, int]:
    """Open demonstration and ranking tasks, for researchers. Demonstration tasks are made
    lazily (`ensure_demonstration_tasks`, when a labeler next looks): the ones still to be made
    count as open, since that is what labelers will see."""
    open_tasks = dict(
        session.execute(
            select(Task.kind, func.count())
            .where(
                Task.status == TaskStatus.open.value,
                Task.kind.in_([TaskKind.demonstration.value, TaskKind.ranking.value]),
            )
            .group_by(Task.kind)
        ).all()
    )
    missing = _missing_demonstration_tasks().subquery()
    to_make = session.scalar(select(func.count()).select_from(missing))
    return {
        "demonstration": open_tasks.get(TaskKind.demonstration.value, 0) + (to_make or 0),
        "ranking": open_tasks.get(TaskKind.ranking.value, 0),
    }


# the search for prompts still without a demonstration task reads every prompt (1.7-2.2 s at a
# million prompts); while it takes under FAST_SCAN_S it runs on every upkeep, and once it is
# slower it runs again only SCAN_SPACING times its duration later (at most 5% of the time):
# intake makes the tasks of what it stores itself, this search is the backstop. Before, the
# periodic sweep (every 5 s) ran it each time: 40% of a core at a million prompts.
FAST_SCAN_S = 0.5


SCAN_SPACING = 20.0


_scan_lock = threading.Lock()


_next_slow_scan = 0.0  # time.monotonic() before which a slow scan is not repeated


def reset_scan_spacing() -> None:
    """Forget the last slow scan (tests; a process that knows prompts changed)."""
    _scanned(0.0)


def _scan_due() -> bool:
    with _scan_lock:
        return time.monotonic() >= _next_slow_scan


def _scanned(seconds: float) -> None:
    global _next_slow_scan
    with _scan_lock:
        _next_slow_scan = (
            0.0 if seconds < FAST_SCAN_S else time.monotonic() + seconds * SCAN_SPACING
        )


def maintain_queue(session: Session, now: datetime | None = None, kind: str | None = None) -> int:
    """Queue upkeep off the labelers' path: release expired holds and make the missing
    demonstration tasks (for a request of ``kind``; every kind when None; a slow search not
    more often than ``SCAN_SPACING`` times its duration). Returns how many rows changed. Run
    by the periodic job, after intake, and by the queue when it finds nothing."""
    changed = release_expired_locks(session, now)
    if kind in (None, TaskKind.demonstration.value) and _scan_due():
        started = time.monotonic()
        changed += ensure_demonstration_tasks(session)
        _scanned(time.monotonic() - started)
    return changed
