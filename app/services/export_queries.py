"""The SQL side of the export: which rows each export holds, as keyset-paginated queries.

Only accepted prompts; labels of held-out labelers only on request; no skipped task; only
labels of task kinds that are training data (never evaluation or gold judgments).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from app.models import (
    Assignment,
    AssignmentStatus,
    Demonstration,
    Prompt,
    PromptSource,
    PromptStatus,
    Ranking,
    Task,
    User,
)
from app.schemas.export import PAIR_CURSOR_RE, ExportFilters
from app.services import Invalid, NotFound
from app.services.export_params import check_filters, parse_format, parse_kind
from app.services.judgment_scores import labelers_with_gold_accuracy
from app.services.task_kinds import Form, training_kinds
from app.services.use_cases import check_known_use_case


@dataclass(frozen=True)
class Cursor:
    """Where a stream resumes: after record ``last_id``; for pairs, also after pair ``pair``
    of ranking ``last_id`` (None: after the whole ranking)."""

    last_id: int
    pair: int | None = None

    @classmethod
    def parse(cls, after: str | None) -> Cursor:
        if after is None:
            return cls(0)
        match = PAIR_CURSOR_RE.match(after)
        if match is None:  # check_filters has said why already
            raise Invalid("after is not a valid cursor", field="after")
        pair = match.group(2)
        return cls(int(match.group(1)), int(pair) if pair is not None else None)


def _not_skipped(task_id: Any, labeler_id: Any) -> Any:
    """A label whose assignment was skipped is no label (whatever a service left behind)."""
    skipped = select(Assignment.id).where(
        Assignment.task_id == task_id,
        Assignment.labeler_id == labeler_id,
        Assignment.status == AssignmentStatus.skipped.value,
    )
    return ~skipped.exists()


def _held_out_ids() -> Select[int]:
    return select(User.id).where(User.held_out.is_(True))


def _prompt_conditions(filters: ExportFilters) -> list[Any]:
    conditions: list[Any] = [Prompt.status == PromptStatus.accepted.value]
    if filters.split is not None:
        conditions.append(Prompt.split == filters.split.value)
    if filters.use_case is not None:
        conditions.append(Prompt.use_case == filters.use_case)
    return conditions


def time_conditions(column: Any, filters: ExportFilters) -> list[Any]:
    """``since`` (inclusive) and ``until`` (exclusive) on ``column``; the data browser too."""
    conditions = []
    if filters.since is not None:
        conditions.append(column >= filters.since)
    if filters.until is not None:
        conditions.append(column < filters.until)
    return conditions


def _label_query(
    model: type[Ranking] | type[Demonstration], filters: ExportFilters
) -> Select[*tuple[Any, ...]]:
    """Rows of ``model`` (with their prompt) that pass the filters, in id order."""
    conditions = _prompt_conditions(filters) + time_conditions(model.created_at, filters)
    conditions.append(_not_skipped(model.task_id, model.labeler_id))
    form: Form = "ranking" if model is Ranking else "demonstration"
    conditions.append(Task.kind.in_(training_kinds(form)))
    if filters.labeler_id is not None:
        conditions.append(model.labeler_id == filters.labeler_id)
    if not filters.include_held_out_labelers:
        conditions.append(model.labeler_id.not_in(_held_out_ids()))
    if filters.exclude_labeler:
        conditions.append(model.labeler_id.not_in(filters.exclude_labeler))
    if filters.min_gold_accuracy is not None:
        accurate = labelers_with_gold_accuracy(filters.min_gold_accuracy)
        conditions.append(model.labeler_id.in_(accurate))
    columns: list[Any] = [model.id, model.prompt_id, model.labeler_id, Prompt.text, Prompt.split]
    columns.append(Prompt.use_case)
    if model is Ranking:
        columns += [Ranking.k, Ranking.task_id, Task.agreement_credit, Task.agreement_pairs]
    else:
        columns.append(Demonstration.text.label("completion"))
    return (
        select(*columns)
        .join(Prompt, Prompt.id == model.prompt_id)
        .join(Task, Task.id == model.task_id)
        .where(*conditions)
        .order_by(model.id)
    )


def _prompt_query(filters: ExportFilters) -> Select[*tuple[Any, ...]]:
    conditions = _prompt_conditions(filters) + time_conditions(Prompt.created_at, filters)
    if filters.dataset == "ppo":  # the method's PPO data set: customer (API) prompts only
        conditions.append(Prompt.source == PromptSource.api.value)
    if filters.labeler_id is not None:
        conditions.append(Prompt.author_id == filters.labeler_id)
    if filters.exclude_labeler:
        conditions.append(
            Prompt.author_id.is_(None) | Prompt.author_id.not_in(filters.exclude_labeler)
        )
    if not filters.include_held_out_labelers:
        # a prompt a held-out labeler wrote is their work too
        conditions.append((Prompt.author_id.is_(None)) | Prompt.author_id.not_in(_held_out_ids()))
    columns = [Prompt.id, Prompt.text, Prompt.split, Prompt.source, Prompt.kind, Prompt.use_case]
    return select(*columns).where(*conditions).order_by(Prompt.id)


def consensus_query(filters: ExportFilters) -> Select[*tuple[Any, ...]]:
    """The tasks of the rankings that pass the filters, in task id order (one consensus
    record per task)."""
    rankings = _label_query(Ranking, filters).subquery()
    return (
        select(rankings.c.task_id.label("id"))
        .group_by(rankings.c.task_id)
        .order_by(rankings.c.task_id)
    )


def id_column(kind: str) -> Any:
    return {"comparisons": Ranking.id, "demonstrations": Demonstration.id, "prompts": Prompt.id}[
        kind
    ]


def base_query(kind: str, filters: ExportFilters) -> Select[*tuple[Any, ...]]:
    if kind == "comparisons":
        return _label_query(Ranking, filters)
    if kind == "demonstrations":
        return _label_query(Demonstration, filters)
    return _prompt_query(filters)


def validate_filters(
    session: Session, kind: str, filters: ExportFilters, fmt: str | None
) -> str | None:
    """Check the request against the data (a labeler or use case nobody knows: 404, naming
    the parameter, since its value may well be well formed); returns fmt."""
    parse_kind(kind)
    fmt = parse_format(kind, fmt)
    check_filters(filters, kind, fmt)
    if filters.labeler_id is not None:
        user = session.get(User, filters.labeler_id)
        if user is None:
            raise NotFound(f"no user with id {filters.labeler_id}", field="labeler_id")
        if user.held_out and not filters.include_held_out_labelers:
            raise Invalid(
                f"user {filters.labeler_id} is a held-out labeler; "
                "pass include_held_out_labelers=true to export their work",
                field="labeler_id",
            )
    unknown = [
        labeler_id
        for labeler_id in filters.exclude_labeler
        if session.get(User, labeler_id) is None
    ]
    if unknown:
        raise NotFound(f"no user with id {unknown[0]}", field="exclude_labeler")
    if filters.use_case is not None:
        check_known_use_case(session, filters.use_case)
    return fmt
