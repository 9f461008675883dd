"""What a labeler sees for a held task, and what they submit: demonstrations, rankings, skips.

The HTML pages and the JSON API both call `describe_assignment` and `submit`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol, cast

from sqlalchemy import Table, insert, select
from sqlalchemy.orm import Session
from sqlalchemy.orm.util import identity_key

from app.config import get_settings
from app.db import is_postgres, utcnow
from app.models import (
    Assignment,
    AssignmentStatus,
    Demonstration,
    Ranking,
    RankingEntry,
    Task,
    TaskStatus,
    User,
)
from app.schemas.labeling import SubmissionIn
from app.services import Conflict, Invalid, NotFound, ServiceError
from app.services.agreement import Tally
from app.services.judgment_scores import (
    agreement_with_earlier,
    gold_score,
    one_more_labeler,
    rescore_task,
)
from app.services.labeling_input import (
    checked_skip_reason,
    demonstration_text,
    parse_submission,
    ranking_entries,
    validated_ranking,
)
from app.services.queue import FINISHED, Held
from app.services.submission_statements import (
    LOCKED_COLUMNS,
    RANKING_ENTRIES,
    RANKINGS,
    EndedHold,
    LockedTask,
    ranking_with_entries,
    submit_statements,
)
from app.services.task_kinds import a_or_an, spec_of
from app.services.task_view import task_view

DEMONSTRATIONS = cast(Table, Demonstration.__table__)


class _Finished(Protocol):
    """What a submission's answer reads of the hold it ended: an ``Assignment``, or the row
    the ending ``UPDATE … RETURNING`` gave."""

    @property
    def status(self) -> str: ...

    @property
    def labeler_id(self) -> int: ...


class NotYours(ServiceError):
    status_code = 403


def _own_assignment(session: Session, labeler: User, task_id: int, *, lock: bool) -> Assignment:
    query = select(Assignment).where(
        Assignment.task_id == task_id, Assignment.labeler_id == labeler.id
    )
    assignment = session.scalar(query.with_for_update() if lock else query)
    if assignment is None:
        raise NotYours(
            f"task {task_id} is not assigned to you; get a task from GET /api/v1/tasks/next",
            field="task_id",
        )
    return assignment


def _already_finished(assignment: Assignment) -> Conflict:
    return Conflict(
        f"you already {assignment.status} task {assignment.task_id}; "
        "a submission cannot be changed",
        field="task_id",
    )


def _check_hold(assignment: Assignment, now: datetime) -> None:
    if assignment.status == AssignmentStatus.expired.value or assignment.lock_expires_at <= now:
        raise Conflict(
            f"your hold on task {assignment.task_id} expired at "
            f"{assignment.lock_expires_at:%H:%M} UTC; take a task again "
            "(your draft is kept in this browser)",
            field="task_id",
        )


def own_assignment(session: Session, labeler: User, task_id: int) -> Assignment:
    """The labeler's assignment of a task, whatever its state; 403 when there is none."""
    return _own_assignment(session, labeler, task_id, lock=False)


def held_assignment(session: Session, labeler: User, task_id: int) -> Assignment:
    """The labeler's live hold on a task: 403 when the task is not theirs, 409 when they
    already submitted or skipped it or their hold expired."""
    assignment = _own_assignment(session, labeler, task_id, lock=False)
    if assignment.status in FINISHED:
        raise _already_finished(assignment)
    _check_hold(assignment, utcnow())
    return assignment


def describe_assignment(session: Session, assignment: Held) -> dict[str, Any]:
    """The task as the labeler sees it: prompt, and for rankings the completions in the order
    shown to this labeler. One read (none right after the queue handed the task out)."""
    view = task_view(session, assignment.task_id)
    spec = spec_of(view.kind)
    described: dict[str, Any] = {
        "task_id": view.task_id,
        "kind": spec.shown_as,
        "likert_required": spec.requires_likert(),
        "prompt": dict(view.prompt),
        "lock_expires_at": assignment.lock_expires_at,
    }
    if spec.form == "ranking":
        order = assignment.display_order or view.completion_ids
        texts = view.texts
        described["completions"] = [{"completion_id": cid, "text": texts[cid]} for cid in order]
    return described


def submit(
    session: Session, labeler: User, task_id: int, payload: SubmissionIn | dict[str, Any]
) -> dict[str, Any]:
    """Store a labeler's demonstration, ranking or skip for a task they hold.

    Repeating an identical submission returns the stored result (nothing new is written);
    a different one after submitting is a 409.

    The usual call (a live hold) ends the hold in one ``UPDATE … RETURNING``, locks the task
    in another (a one-labeler task is marked done in the same statement) and inserts the
    labels. Invalid input raises after those writes: the caller rolls back on a ServiceError
    (the request's session does).
    """
    sub = parse_submission(payload)
    given = [name for name in ("text", "ranking", "skip") if getattr(sub, name) is not None]
    if len(given) != 1:
        raise Invalid("send exactly one of 'text', 'ranking' or 'skip'", field="submission")
    if sub.ratings is not None and sub.ranking is None:
        raise Invalid("'ratings' go with a 'ranking'", field="ratings")
    skip_reason = checked_skip_reason(sub.skip.reason) if sub.skip is not None else None
    now = utcnow()
    statements = submit_statements()
    postgres = is_postgres(session)
    # Core on the session's connection: nothing of the ORM's is pending on this path
    connection = session.connection()
    end = {
        "of_task": task_id,
        "of_labeler": labeler.id,
        "now": now,
        "new_status": (
            AssignmentStatus.skipped.value if skip_reason else AssignmentStatus.submitted.value
        ),
        "reason": skip_reason,
    }
    # lock order: the assignment, then the task (as the queue does)
    locked: Sequence[Any]
    if postgres:  # both in one statement
        both = statements.end_and_lock if skip_reason is None else statements.end_and_lock_of_skip
        row = connection.execute(both, end).one_or_none()
        if row is None:
            return _submit_without_hold(session, labeler, task_id, sub, now)
        locked = row[: len(LOCKED_COLUMNS)]
        assignment = EndedHold(*row[len(LOCKED_COLUMNS) :])
    else:
        ended = connection.execute(statements.end_hold, end).one_or_none()
        if ended is None:
            return _submit_without_hold(session, labeler, task_id, sub, now)
        assignment = EndedHold(*ended)
        lock = statements.lock if skip_reason is None else statements.lock_of_skip
        locked = connection.execute(lock, {"of_task": task_id}).one()
    task = LockedTask(*locked)
    spec = spec_of(task.kind)
    ranking_form = skip_reason is None and spec.form == "ranking"
    # a task of one labeler, submitted (not skipped), is done: the lock marked it so
    done_here = skip_reason is None and task.overlap <= 1 and not spec.once_per_labeler
    counts_matter = not spec.once_per_labeler and not done_here
    earlier_matter = ranking_form and (spec.once_per_labeler or task.overlap > 1)
    finished: dict[str, int] = {}
    earlier: dict[int, dict[int, int]] = {}
    if counts_matter or earlier_matter:
        for ranking_id, completion_id, rank in connection.execute(
            statements.after_lock, {"task_id": task_id}
        ):
            if ranking_id == 0:
                finished[AssignmentStatus.submitted.value] = int(completion_id)
                finished[AssignmentStatus.skipped.value] = int(rank)
            else:
                earlier.setdefault(ranking_id, {})[completion_id] = rank
    time_spent = sub.time_spent_ms
    if time_spent is None:
        time_spent = int((now - assignment.assigned_at) / timedelta(milliseconds=1))
    label_id: int | None = None
    if skip_reason is None and spec.form == "demonstration":
        if sub.text is None:
            raise Invalid(f"task {task_id} is a demonstration: send 'text'", field="text")
        label_id = connection.execute(
            insert(DEMONSTRATIONS).returning(DEMONSTRATIONS.c.id),
            {
                "task_id": task.id,
                "prompt_id": task.prompt_id,
                "labeler_id": labeler.id,
                "text": demonstration_text(sub.text),
                "time_spent_ms": time_spent,
            },
        ).scalar_one()
    elif ranking_form:
        if sub.ranking is None:
            raise Invalid(
                f"task {task_id} is {a_or_an(spec.shown_as)}: send 'ranking'", field="ranking"
            )
        shown = list(assignment.display_order or task_view(session, task.id).completion_ids)
        groups, ratings = validated_ranking(sub, shown, likert_required=spec.requires_likert())
        entries = ranking_entries(groups, ratings)
        new = {e["completion_id"]: e["rank"] for e in entries}
        if earlier_matter:
            tally = agreement_with_earlier(new, earlier.values())
            if tally.pairs:
                task.agreement_credit = (task.agreement_credit or 0.0) + tally.credit
                task.agreement_pairs = (task.agreement_pairs or 0) + tally.pairs
        gold = gold_score(task.kind, task.reference, new)
        ranking = {
            "task_id": task.id,
            "prompt_id": task.prompt_id,
            "labeler_id": labeler.id,
            "k": len(shown),
            "display_order": shown,
            "time_spent_ms": time_spent,
            "created_at": now,
            "gold_credit": gold.credit if gold else None,
            "gold_pairs": gold.pairs if gold else None,
        }
        if postgres:
            inserted = connection.execute(ranking_with_entries(), {**ranking, "entries": entries})
            label_id = inserted.scalars().first()
        else:
            label_id = connection.execute(
                insert(RANKINGS).returning(RANKINGS.c.id), ranking
            ).scalar_one()
            # the entries in one executemany
            connection.execute(
                insert(RANKING_ENTRIES), [{"ranking_id": label_id, **e} for e in entries]
            )
    if counts_matter:
        _status_after(session, task, finished, skipped=skip_reason is not None)
    if task.changed_since(locked):
        connection.execute(
            statements.write_back,
            {
                "of_task": task.id,
                "new_status": task.status,
                "new_overlap": task.overlap,
                "new_overlap_added": task.overlap_added,
                "new_credit": task.agreement_credit,
                "new_pairs": task.agreement_pairs,
            },
        )
    # a Task this session loaded earlier (the HTML form reads its kind) is read again if used
    stale = session.identity_map.get(identity_key(Task, task.id))
    if stale is not None:
        session.expire(stale)
    return _result(session, task, assignment, replayed=False, label_id=label_id)


def _submit_without_hold(
    session: Session, labeler: User, task_id: int, sub: SubmissionIn, now: datetime
) -> dict[str, Any]:
    """No live hold: a replay of what was stored (200), or say why not (404, 403, 409)."""
    task = session.get(Task, task_id)
    if task is None:
        raise NotFound(f"task {task_id} does not exist", field="task_id")
    assignment = _own_assignment(session, labeler, task_id, lock=True)
    if assignment.status in FINISHED:
        if _same_as_stored(session, task, assignment, sub):
            return _result(session, task, assignment, replayed=True)
        raise _already_finished(assignment)
    _check_hold(assignment, now)
    raise Conflict(f"your hold on task {task_id} changed meanwhile; retry", field="task_id")


def revise(
    session: Session, labeler: User, task_id: int, payload: SubmissionIn | dict[str, Any]
) -> dict[str, Any]:
    """Replace a labeler's own demonstration or ranking while its task is still open (the
    task needs more labelers, or is served to every labeler). Same checks as `submit`; the
    time spent on the edit is added to the stored time. A skip cannot be edited."""
    sub = parse_submission(payload)
    if sub.skip is not None:
        raise Invalid("a skip cannot be edited; edit a submitted task", field="skip")
    task = session.get(Task, task_id)
    if task is None:
        raise NotFound(f"task {task_id} does not exist", field="task_id")
    assignment = _own_assignment(session, labeler, task_id, lock=True)
    session.refresh(task, with_for_update=True)
    check_editable(assignment, task)
    spec = spec_of(task.kind)
    extra_ms = sub.time_spent_ms or 0
    if spec.form == "demonstration":
        if sub.text is None:
            raise Invalid(f"task {task_id} is a demonstration: send 'text'", field="text")
        demo = session.scalars(
            select(Demonstration).where(
                Demonstration.task_id == task_id, Demonstration.labeler_id == labeler.id
            )
        ).one()
        demo.text = demonstration_text(sub.text)
        demo.time_spent_ms = (demo.time_spent_ms or 0) + extra_ms
    else:
        if sub.ranking is None:
            raise Invalid(
                f"task {task_id} is {a_or_an(spec.shown_as)}: send 'ranking'", field="ranking"
            )
        ranking = session.scalars(
            select(Ranking).where(Ranking.task_id == task_id, Ranking.labeler_id == labeler.id)
        ).one()
        # an edit starts from the labeler's own answer, not the shown order: no untouched check
        sub = sub.model_copy(update={"confirmed_order": True})
        groups, ratings = validated_ranking(
            sub, list(ranking.display_order), likert_required=spec.requires_likert()
        )
        ranking.entries.clear()
        session.flush()  # the old entries go before the new ones take their unique keys
        ranking.entries.extend(RankingEntry(**row) for row in ranking_entries(groups, ratings))
        ranking.time_spent_ms = (ranking.time_spent_ms or 0) + extra_ms
        session.flush()
        rescore_task(session, task)  # the task's agreement and gold scores follow the edit
    session.flush()
    return _result(session, task, assignment, replayed=False)


def check_editable(assignment: Assignment, task: Task) -> None:
    """A submission may be edited while its task is open: 409 for a skip or anything not
    submitted, and once the task is done or closed."""
    if assignment.status != AssignmentStatus.submitted.value:
        raise Conflict(
            f"you have not submitted task {task.id} ({assignment.status}); only a submitted "
            "task can be edited",
            field="task_id",
        )
    if task.status != TaskStatus.open.value:
        raise Conflict(
            f"task {task.id} is {task.status}: its labels can no longer change", field="task_id"
        )


def _status_after(
    session: Session, task: LockedTask, finished: dict[str, int], *, skipped: bool
) -> None:
    """A skip gives its slot to another labeler (one labeler's "I cannot judge this" should not
    end the task) until `task_max_skips` labelers skipped it: then it is closed as unclear.
    The task is done when `overlap` labelers submitted, unless they disagree and adaptive
    overlap gives it one more (see judgment_scores). ``finished``: the task's submitted and
    skipped holds, this one included, read under the task's lock."""
    if finished.get(AssignmentStatus.submitted.value, 0) >= task.overlap:
        agreement = Tally(task.agreement_credit or 0.0, task.agreement_pairs or 0)
        if not skipped and one_more_labeler(session, task.kind, agreement, task.overlap):
            task.overlap += 1
            task.overlap_added = (task.overlap_added or 0) + 1
        else:
            task.status = TaskStatus.done.value
    elif finished.get(AssignmentStatus.skipped.value, 0) >= get_settings().task_max_skips:
        task.status = TaskStatus.closed.value


def _same_as_stored(
    session: Session, task: Task, assignment: Assignment, sub: SubmissionIn
) -> bool:
    if sub.skip is not None:
        return (
            assignment.status == AssignmentStatus.skipped.value
            and assignment.skip_reason == sub.skip.reason.strip()
        )
    if assignment.status != AssignmentStatus.submitted.value:
        return False
    if spec_of(task.kind).form == "demonstration":
        stored = session.scalar(
            select(Demonstration.text).where(
                Demonstration.task_id == task.id, Demonstration.labeler_id == assignment.labeler_id
            )
        )
        return sub.text is not None and stored == sub.text.replace("\r\n", "\n")
    ranking = session.scalar(
        select(Ranking).where(
            Ranking.task_id == task.id, Ranking.labeler_id == assignment.labeler_id
        )
    )
    if ranking is None or sub.ranking is None:
        return False
    stored_groups: dict[int, set[int]] = {}
    stored_ratings = {}
    for entry in ranking.entries:
        stored_groups.setdefault(entry.rank, set()).add(entry.completion_id)
        stored_ratings[entry.completion_id] = (entry.likert, sorted(entry.flags))
    given_ratings = {
        cid: (r.likert, sorted(set(r.flags))) for cid, r in (sub.ratings or {}).items()
    }
    empty: tuple[int | None, list[str]] = (None, [])
    return [stored_groups[k] for k in sorted(stored_groups)] == [
        set(g) for g in sub.ranking
    ] and all(
        stored_ratings.get(cid, empty) == given_ratings.get(cid, empty)
        for cid in set(stored_ratings) | set(given_ratings)
    )


def _result(
    session: Session,
    task: Task | LockedTask,
    assignment: _Finished,
    *,
    replayed: bool,
    label_id: int | None = None,
) -> dict[str, Any]:
    result: dict[str, Any] = {
        "task_id": task.id,
        "kind": spec_of(task.kind).shown_as,
        "status": assignment.status,
        "replayed": replayed,
    }
    if assignment.status == AssignmentStatus.submitted.value:
        model = Demonstration if spec_of(task.kind).form == "demonstration" else Ranking
        key = "demonstration_id" if model is Demonstration else "ranking_id"
        result[key] = label_id or session.scalar(
            select(model.id).where(
                model.task_id == task.id, model.labeler_id == assignment.labeler_id
            )
        )
    return result
