"""The data browser's queries (`/admin/browse`): prompts, demonstrations, rankings and tasks with
filters and paging, one prompt with all its tasks and labels, and the export API URL that
returns the same labels.

The filters are the export API's (split, use_case, labeler / labeler_id, since, until,
include_held_out_labelers), checked by the same `export_params.filters_from_query`, plus
``status`` (prompts and tasks) and ``page``: an unknown or malformed parameter is a 422 naming
it, never an empty page.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import exists, func, select
from sqlalchemy.orm import Session, aliased

from app.models import (
    Assignment,
    Completion,
    Demonstration,
    Prompt,
    PromptStatus,
    Ranking,
    Task,
    TaskStatus,
    User,
)
from app.schemas.export import ExportFilters
from app.services import Invalid, NotFound
from app.services.export_params import filters_from_query
from app.services.export_queries import time_conditions

VIEWS = ("prompts", "demonstrations", "rankings", "tasks")
PER_PAGE = 50
EXCERPT = 200
# the export API that returns the labels of each view (tasks have none)
EXPORTS = {
    "prompts": "/api/v1/export/prompts",
    "demonstrations": "/api/v1/export/demonstrations",
    "rankings": "/api/v1/export/comparisons?format=rankings",
}
# the export filters the browser applies (others, such as min_gold_accuracy, are the export's)
FILTERS = (
    "split", "since", "until", "use_case", "labeler", "labeler_id", "include_held_out_labelers",
)  # fmt: skip
STATUSES = {
    "prompts": [s.value for s in PromptStatus],
    "tasks": [s.value for s in TaskStatus],
}


def parse_query(
    session: Session, view: str, pairs: Sequence[tuple[str, str]]
) -> tuple[ExportFilters, str | None, int]:
    """The view's filters, status and page from a query string (empty values are unset)."""
    if view not in VIEWS:
        raise NotFound(f"unknown view {view!r}; choose one of {', '.join(VIEWS)}", field="view")
    pairs = [(k, v) for k, v in pairs if v != ""]
    given = dict(pairs)
    status = given.get("status")
    if status is not None and status not in STATUSES.get(view, []):
        if view not in STATUSES:
            raise Invalid("status applies to prompts and tasks", field="status")
        raise Invalid(
            f"unknown status {status!r}; choose one of {', '.join(STATUSES[view])}",
            field="status",
        )
    try:
        page = int(given.get("page", "1"))
    except ValueError:
        raise Invalid("page must be a whole number", field="page") from None
    if not 1 <= page <= 1_000_000:
        raise Invalid("page must be 1 or more", field="page")
    rest = [(k, v) for k, v in pairs if k not in ("status", "page")]
    for name, _ in rest:
        if name not in FILTERS:
            raise Invalid(
                f"the browser does not filter by {name!r}; it takes {', '.join(FILTERS)}, "
                "status and page",
                field=name,
            )
    filters = filters_from_query(session, rest)
    if filters.since and filters.until and filters.since >= filters.until:
        raise Invalid("since must be earlier than until", field="since")
    return filters, status, page


def _prompt_filters(filters: ExportFilters) -> list[Any]:
    conditions = []
    if filters.split is not None:
        conditions.append(Prompt.split == filters.split.value)
    if filters.use_case is not None:
        conditions.append(Prompt.use_case == filters.use_case)
    return conditions


def _labels_of(model: Any, filters: ExportFilters) -> list[Any]:
    conditions = [*_prompt_filters(filters), *time_conditions(model.created_at, filters)]
    if filters.labeler_id is not None:
        conditions.append(model.labeler_id == filters.labeler_id)
    if not filters.include_held_out_labelers:
        held_out = aliased(User)
        conditions.append(
            ~exists().where(held_out.id == model.labeler_id, held_out.held_out.is_(True))
        )
    return conditions


def _query(view: str, filters: ExportFilters, status: str | None) -> Any:
    """(select of the view's rows, newest first, and the conditions)."""
    excerpt = func.substr(Prompt.text, 1, EXCERPT).label("prompt_excerpt")
    if view == "prompts":
        author = aliased(User)
        query = (
            select(Prompt, excerpt, author.username.label("author"))
            .outerjoin(author, author.id == Prompt.author_id)
            .where(*_prompt_filters(filters), *time_conditions(Prompt.created_at, filters))
            .order_by(Prompt.id.desc())
        )
        if filters.labeler_id is not None:
            query = query.where(Prompt.author_id == filters.labeler_id)
        if status is not None:
            query = query.where(Prompt.status == status)
        return query
    if view in ("demonstrations", "rankings"):
        model = Demonstration if view == "demonstrations" else Ranking
        return (
            select(model, excerpt, User.username.label("labeler"), Prompt.split, Prompt.use_case)
            .join(Prompt, Prompt.id == model.prompt_id)
            .join(User, User.id == model.labeler_id)
            .where(*_labels_of(model, filters))
            .order_by(model.id.desc())
        )
    query = (
        select(Task, excerpt, Prompt.split, Prompt.use_case)
        .join(Prompt, Prompt.id == Task.prompt_id)
        .where(*_prompt_filters(filters), *time_conditions(Task.created_at, filters))
        .order_by(Task.id.desc())
    )
    if filters.labeler_id is not None:
        query = query.where(
            exists().where(
                Assignment.task_id == Task.id, Assignment.labeler_id == filters.labeler_id
            )
        )
    if status is not None:
        query = query.where(Task.status == status)
    return query


def browse(
    session: Session, view: str, filters: ExportFilters, status: str | None, page: int
) -> dict[str, Any]:
    """One page of the view's rows (``PER_PAGE``), the total and the number of pages."""
    query = _query(view, filters, status)
    total = session.scalar(select(func.count()).select_from(query.order_by(None).subquery()))
    rows = session.execute(query.limit(PER_PAGE).offset((page - 1) * PER_PAGE)).all()
    return {
        "view": view,
        "rows": [row._asdict() for row in rows],
        "total": total or 0,
        "page": page,
        "pages": max(1, -(-(total or 0) // PER_PAGE)),
    }


def export_url(view: str, filters: ExportFilters) -> str | None:
    """The export API URL with the same filters (the export's own rules also apply: accepted
    prompts only, no skipped tasks, no evaluation or gold labels)."""
    base = EXPORTS.get(view)
    if base is None:
        return None
    query = urlencode(filters.as_json())
    if not query:
        return base
    return f"{base}{'&' if '?' in base else '?'}{query}"


def prompt_detail(session: Session, prompt_id: int) -> dict[str, Any]:
    """One prompt with its outputs, tasks (and who holds or did them) and every label."""
    prompt = session.get(Prompt, prompt_id)
    if prompt is None:
        raise NotFound(f"prompt {prompt_id} does not exist", field="prompt_id")
    names = dict(session.execute(select(User.id, User.username)).all())
    completions = {
        c.id: c
        for c in session.scalars(
            select(Completion).where(Completion.prompt_id == prompt_id).order_by(Completion.id)
        )
    }
    tasks = []
    for task in session.scalars(select(Task).where(Task.prompt_id == prompt_id).order_by(Task.id)):
        assignments = session.scalars(
            select(Assignment).where(Assignment.task_id == task.id).order_by(Assignment.id)
        ).all()
        demonstrations = session.scalars(
            select(Demonstration).where(Demonstration.task_id == task.id).order_by(Demonstration.id)
        ).all()
        rankings = session.scalars(
            select(Ranking).where(Ranking.task_id == task.id).order_by(Ranking.id)
        ).all()
        tasks.append(
            {
                "task": task,
                "completion_ids": [item.completion_id for item in task.items],
                "assignments": [(a, names.get(a.labeler_id, "?")) for a in assignments],
                "demonstrations": [(d, names.get(d.labeler_id, "?")) for d in demonstrations],
                "rankings": [(r, names.get(r.labeler_id, "?")) for r in rankings],
            }
        )
    return {
        "prompt": prompt,
        "author": names.get(prompt.author_id) if prompt.author_id else None,
        "completions": completions,
        "tasks": tasks,
    }
