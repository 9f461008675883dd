"""Export filters and snapshot shapes for the export API, the CLI and the jobs worker."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from app.models.prompts import Split
from app.schemas import INT32_MAX, DbId, Text, aware_utc
from app.services import Invalid

ExportKind = Literal["comparisons", "demonstrations", "prompts"]
ComparisonFormat = Literal["rankings", "pairs"]
KINDS: tuple[str, ...] = ("comparisons", "demonstrations", "prompts")
COMPARISON_FORMATS: tuple[str, ...] = ("rankings", "pairs")
# resume cursor of the pairs format: "<group_id>" (after a whole ranking) or "<group_id>:<n>"
# (ASCII digits only: str.isdigit and \d also accept digits int() cannot read, such as "²")
PAIR_CURSOR_RE = re.compile(r"^(\d+)(?::(\d+))?\Z", re.ASCII)


class ExportFilters(BaseModel):
    """What to export. Every filter narrows; no filter means every usable row.

    ``since`` is inclusive and ``until`` exclusive, both on the row's creation time (the
    submission for labels, the intake for prompts). ``after`` resumes a stream after the
    record id it names (see ``app.services.export`` for each kind's id).
    """

    model_config = ConfigDict(extra="forbid")

    split: Split | None = None
    since: datetime | None = None
    until: datetime | None = None
    use_case: Text | None = Field(default=None, min_length=1, max_length=64)
    labeler_id: int | None = Field(default=None, ge=1, le=INT32_MAX)
    include_held_out_labelers: bool = False
    dataset: Literal["ppo"] | None = None
    after: str | None = Field(default=None, min_length=1, max_length=64)

    @field_validator("since", "until")
    @classmethod
    def _aware_utc(cls, value: datetime | None) -> datetime | None:
        return aware_utc(value)

    def check_for(self, kind: str, fmt: str | None) -> None:
        """Raise ``Invalid`` (naming the parameter) when a filter makes no sense for ``kind``."""
        if self.since and self.until and self.since >= self.until:
            raise Invalid("since must be earlier than until", field="since")
        if self.dataset is not None and kind != "prompts":
            raise Invalid("dataset applies to the prompts export only", field="dataset")
        if self.after is not None:
            match = PAIR_CURSOR_RE.match(self.after)
            if kind == "comparisons" and fmt == "pairs":
                if match is None:
                    raise Invalid(
                        "after must be a pair_id '<group_id>:<n>' or a group_id", field="after"
                    )
            elif match is None or match.group(2) is not None:
                raise Invalid("after must be a record id (a positive integer)", field="after")
            if any(int(number) > INT32_MAX for number in match.groups() if number is not None):
                raise Invalid(f"after is out of range (at most {INT32_MAX})", field="after")

    def as_json(self) -> dict[str, Any]:
        """The filters that are set, JSON-ready (what a snapshot records)."""
        return self.model_dump(mode="json", exclude_defaults=True)


def parse_filters(values: dict[str, Any]) -> ExportFilters:
    """``ExportFilters`` from raw parameters; errors become a 422 naming the parameter."""
    try:
        return ExportFilters.model_validate(values)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = str(err["loc"][0]) if err["loc"] else None
        message = err["msg"]
        if err["type"] == "extra_forbidden":
            message = f"unknown parameter {field!r}"
        raise Invalid(f"{field}: {message}" if field else message, field=field) from None


def parse_kind(kind: str) -> str:
    if kind not in KINDS:
        raise Invalid(f"unknown export {kind!r}; choose one of {', '.join(KINDS)}", field="dataset")
    return kind


def parse_format(kind: str, fmt: str | None) -> str | None:
    """The record format: rankings (default) or pairs for comparisons, none otherwise."""
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


class SnapshotRequest(BaseModel):
    """Body of ``POST /api/v1/export/snapshots``: what to export, and the usual filters."""

    model_config = ConfigDict(extra="forbid")

    export: ExportKind = Field(description="comparisons, demonstrations or prompts")
    format: ComparisonFormat | None = None
    split: Split | None = None
    since: datetime | None = None
    until: datetime | None = None
    use_case: str | None = None
    labeler_id: DbId | None = None
    include_held_out_labelers: bool = False
    dataset: Literal["ppo"] | None = None


class SnapshotOut(BaseModel):
    snapshot_id: int
    export: str
    format: str
    filters: dict[str, Any]
    row_count: int
    sha256: str
    bytes: int | None
    created_by_id: int | None
    created_at: datetime
    download_url: str
