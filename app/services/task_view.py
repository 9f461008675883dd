"""What a labeler sees of a task (``TaskView``): its prompt and its outputs, read in the same
statement that claims or holds it (``view_columns``), or alone (``task_view``)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, cast

from sqlalchemy import (
    JSON,
    ColumnElement,
    Integer,
    Row,
    Select,
    String,
    Table,
    bindparam,
    func,
    literal_column,
    select,
    type_coerce,
)
from sqlalchemy.orm import Session
from sqlalchemy.types import TypeEngine

from app.db import is_postgres
from app.models import (
    Completion,
    Prompt,
    Task,
    TaskItem,
)

TASKS = cast(Table, Task.__table__)


# session.info key: the views of the tasks this session handed out or read, by task id
QUEUE_VIEWS = "queue_views"


@dataclass(frozen=True)
class TaskView:
    """What a labeler sees of a task: its prompt, and its outputs as (position, completion
    id, text) in position order (none for a demonstration task)."""

    task_id: int
    kind: str
    prompt: dict[str, Any]
    outputs: list[tuple[int, int, str]]

    @classmethod
    def of(cls, row: Row[Any]) -> TaskView:
        outputs = sorted((int(p), int(c), str(t)) for p, c, t in (row.outputs or []))
        prompt = {
            "prompt_id": row.prompt_id,
            "text": row.prompt_text,
            "kind": row.prompt_kind,
            "structure": row.prompt_structure,
            "use_case": row.prompt_use_case,
        }
        return cls(task_id=row.id, kind=row.kind, prompt=prompt, outputs=outputs)

    @property
    def completion_ids(self) -> list[int]:
        return [cid for _, cid, _ in self.outputs]

    @property
    def texts(self) -> dict[int, str]:
        return {cid: text for _, cid, text in self.outputs}


# SQLite: SQLAlchemy renders RETURNING without table names, inside subqueries too, which makes
# these correlated subqueries ambiguous ("id"); written out qualified instead
_SQLITE_VIEW: dict[str, tuple[TypeEngine[Any], str]] = {
    "prompt_text": (String(), "prompts.text"),
    "prompt_kind": (String(), "prompts.kind"),
    "prompt_structure": (JSON(), "prompts.structure"),
    "prompt_use_case": (String(), "prompts.use_case"),
}


_SQLITE_OUTPUTS = (
    "(SELECT json_group_array(json_array(task_items.position, completions.id, completions.text))"
    " FROM task_items JOIN completions ON completions.id = task_items.completion_id"
    " WHERE task_items.task_id = tasks.id)"
)


def view_columns(postgres: bool) -> list[ColumnElement[Any]]:
    """A task's view as columns of a statement on ``tasks`` (the claim's RETURNING, or a
    SELECT): the task, its prompt's fields, and its outputs aggregated as JSON (SQLite and
    PostgreSQL both allow correlated subqueries in RETURNING)."""
    task_columns: list[ColumnElement[Any]] = [TASKS.c.id, TASKS.c.kind, TASKS.c.prompt_id]
    if not postgres:
        return [
            *task_columns,
            *(
                literal_column(
                    f"(SELECT {column} FROM prompts WHERE prompts.id = tasks.prompt_id)", type_
                ).label(name)
                for name, (type_, column) in _SQLITE_VIEW.items()
            ),
            literal_column(_SQLITE_OUTPUTS, JSON()).label("outputs"),
        ]

    def of_prompt(column: Any, name: str) -> ColumnElement[Any]:
        return (
            select(column)
            .where(Prompt.id == TASKS.c.prompt_id)
            .correlate(TASKS)
            .scalar_subquery()
            .label(name)
        )

    outputs = (
        select(
            func.json_agg(func.json_build_array(TaskItem.position, Completion.id, Completion.text))
        )
        .select_from(TaskItem)
        .join(Completion, Completion.id == TaskItem.completion_id)
        .where(TaskItem.task_id == TASKS.c.id)
        .correlate(TASKS)
        .scalar_subquery()
    )
    return [
        *task_columns,
        of_prompt(Prompt.text, "prompt_text"),
        of_prompt(Prompt.kind, "prompt_kind"),
        of_prompt(Prompt.structure, "prompt_structure"),
        of_prompt(Prompt.use_case, "prompt_use_case"),
        type_coerce(outputs, JSON).label("outputs"),
    ]


@lru_cache(maxsize=2)
def _view_statement(postgres: bool) -> Select[Any]:
    return select(*view_columns(postgres)).where(TASKS.c.id == bindparam("task_id", type_=Integer))


def task_view(session: Session, task_id: int) -> TaskView:
    """The view of a task this session's queue just handed out or already read, else read in
    one statement (and kept for the session: a page asks for it more than once)."""
    views: dict[int, TaskView] = session.info.setdefault(QUEUE_VIEWS, {})
    view = views.get(task_id)
    if view is None:
        row = (
            session.connection()
            .execute(_view_statement(is_postgres(session)), {"task_id": task_id})
            .one()
        )
        view = views[task_id] = TaskView.of(row)
    return view
