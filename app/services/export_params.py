"""The parameters of an export (which data set, which format, which filters), checked once for
the export API, the CLI, snapshots and the jobs worker; every problem is a 422 naming the
parameter."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import User
from app.schemas import INT32_MAX
from app.schemas.export import COMPARISON_FORMATS, KINDS, PAIR_CURSOR_RE, ExportFilters
from app.services import Invalid, NotFound, validated


def parse_filters(values: dict[str, Any]) -> ExportFilters:
    """``ExportFilters`` from raw parameters; errors become a 422 naming the parameter."""
    return validated(ExportFilters, values)


# query parameters every export takes besides the filters
CONTROL_PARAMS = frozenset({"format", "output", "labeler"})


def filters_from_query(session: Session, pairs: Sequence[tuple[str, str]]) -> ExportFilters:
    """The filters of an export's query string (``labeler`` resolved to ``labeler_id``);
    unknown or repeated parameters are a 422, a username nobody has a 404."""
    allowed = set(ExportFilters.model_fields) | CONTROL_PARAMS
    counts = Counter(name for name, _ in pairs)
    for name, count in counts.items():
        if name not in allowed:
            raise Invalid(f"unknown parameter {name!r}", field=name)
        if count > 1:
            raise Invalid(f"{name} given more than once", field=name)
    values: dict[str, Any] = {k: v for k, v in pairs if k not in CONTROL_PARAMS}
    username = dict(pairs).get("labeler")
    if username is not None:
        if "labeler_id" in values:
            raise Invalid("give labeler or labeler_id, not both", field="labeler")
        # (a NUL names nobody, and PostgreSQL would refuse to compare it)
        user_id = None
        if "\x00" not in username:
            user_id = session.scalar(select(User.id).where(User.username == username))
        if user_id is None:
            raise NotFound(f"no user named {username!r}", field="labeler")
        values["labeler_id"] = user_id
    return parse_filters(values)


def parse_kind(kind: str) -> str:
    if kind not in KINDS:
        raise Invalid(f"unknown export {kind!r}; choose one of {', '.join(KINDS)}", field="dataset")
    return kind


def parse_format(kind: str, fmt: str | None) -> str | None:
    """The record format: rankings (default), pairs or consensus for comparisons, none
    otherwise."""
    if kind != "comparisons":
        if fmt not in (None, ""):
            raise Invalid("format applies to the comparisons export only", field="format")
        return None
    fmt = fmt or "rankings"
    if fmt not in COMPARISON_FORMATS:
        raise Invalid(
            f"unknown format {fmt!r}; choose one of {', '.join(COMPARISON_FORMATS)}",
            field="format",
        )
    return fmt


def check_filters(filters: ExportFilters, kind: str, fmt: str | None) -> None:
    """Raise ``Invalid`` (naming the parameter) when a filter makes no sense for ``kind``."""
    if filters.since and filters.until and filters.since >= filters.until:
        raise Invalid("since must be earlier than until", field="since")
    if filters.dataset is not None and kind != "prompts":
        raise Invalid("dataset applies to the prompts export only", field="dataset")
    if filters.min_gold_accuracy is not None and kind == "prompts":
        raise Invalid(
            "min_gold_accuracy applies to comparisons and demonstrations", field="min_gold_accuracy"
        )
    if filters.after is not None:
        match = PAIR_CURSOR_RE.match(filters.after)
        if kind == "comparisons" and fmt == "pairs":
            if match is None:
                raise Invalid(
                    "after must be a pair_id '<group_id>:<n>' or a group_id", field="after"
                )
        elif match is None or match.group(2) is not None:
            raise Invalid("after must be a record id (a positive integer)", field="after")
        if any(int(number) > INT32_MAX for number in match.groups() if number is not None):
            raise Invalid(f"after is out of range (at most {INT32_MAX})", field="after")
