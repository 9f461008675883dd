"""Export filters and snapshot shapes for the export API, the CLI and the jobs worker."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from app.models.prompts import Split
from app.schemas import INT32_MAX, IsoDateTime, Text, aware_utc

ExportKind = Literal["comparisons", "demonstrations", "prompts"]
ComparisonFormat = Literal["rankings", "pairs", "consensus"]
KINDS: tuple[str, ...] = ("comparisons", "demonstrations", "prompts")
COMPARISON_FORMATS: tuple[str, ...] = ("rankings", "pairs", "consensus")
# resume cursor of the pairs format: "<group_id>" (after a whole ranking) or "<group_id>:<n>"
# (ASCII digits only: str.isdigit and \d also accept digits int() cannot read, such as "²")
PAIR_CURSOR_RE = re.compile(r"^(\d+)(?::(\d+))?\Z", re.ASCII)


def _integers_up_to(limit: int) -> str:
    """A regular expression for the integers 1..``limit`` in decimal, no leading zero."""
    top = str(limit)
    shorter = [f"[1-9][0-9]{{0,{len(top) - 2}}}"] if len(top) > 1 else []
    same = [
        f"{top[:i]}[{'1' if i == 0 else '0'}-{int(top[i]) - 1}][0-9]{{{len(top) - i - 1}}}"
        for i in range(len(top))
        if int(top[i]) > (1 if i == 0 else 0)
    ]
    return "(?:" + "|".join([*shorter, *same, top]) + ")"


# a row id (1..INT32_MAX) in a query string; [0-9], not \d, which also takes other digits
ID_PATTERN = _integers_up_to(INT32_MAX)
# an export's resume cursor: a record id, or (pairs) "<group_id>:<n>"; 0 is "from the start"
CURSOR_PATTERN = f"^(?:0|{ID_PATTERN})(?::(?:0|{ID_PATTERN}))?$"
RECORD_CURSOR_PATTERN = f"^(?:0|{ID_PATTERN})$"
ID_LIST_PATTERN = f"^{ID_PATTERN}(?:,{ID_PATTERN})*$"
PositiveId = Annotated[int, Field(ge=1, le=INT32_MAX)]


class _CommonFilters(BaseModel):
    """The filters every export takes, in a query string and in a snapshot request alike."""

    model_config = ConfigDict(extra="forbid")

    split: Split | None = Field(default=None, description="train, val or test")
    since: IsoDateTime | None = Field(
        default=None, description="created at or after (ISO 8601; UTC if no zone)"
    )
    until: IsoDateTime | None = Field(
        default=None, description="created before (ISO 8601); later than since"
    )
    use_case: Text | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        description="the prompt's use case (404 if unknown)",
    )
    labeler_id: PositiveId | None = Field(
        default=None, description="only this labeler's labels (a user id; 404 if unknown)"
    )
    include_held_out_labelers: bool = Field(
        default=False, description="include held-out labelers' work"
    )

    @field_validator("since", "until")
    @classmethod
    def _aware_utc(cls, value: datetime | None) -> datetime | None:
        return aware_utc(value)


class _LabelFilters(BaseModel):
    # only labels of labelers whose gold accuracy (docs/quality.md) is at least this; a
    # labeler who has judged no gold task yet has none, and is left out
    min_gold_accuracy: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="only labelers whose gold accuracy is at least this",
    )


class _PromptFilters(BaseModel):
    dataset: Literal["ppo"] | None = Field(
        default=None, description="ppo: API prompts only (the PPO data set)"
    )


def _split_ids(value: object) -> object:
    """``"3,7"`` (a query string) as ``[3, 7]``."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class ExportFilters(_CommonFilters, _LabelFilters, _PromptFilters):
    """What to export. Every filter narrows; no filter means every usable row.

    ``since`` is inclusive and ``until`` exclusive, both on the row's creation time (the
    submission for labels, the intake for prompts). ``after`` resumes a stream after the
    record id it names (see ``app.services.export`` for each kind's id).
    """

    after: str | None = Field(default=None, min_length=1, max_length=64)
    # labeler ids whose labels are left out ("3,7" in a query string)
    exclude_labeler: list[PositiveId] = Field(default_factory=list, max_length=1000)

    _id_list = field_validator("exclude_labeler", mode="before")(_split_ids)

    def as_json(self) -> dict[str, Any]:
        """The filters that are set, JSON-ready (what a snapshot records)."""
        return self.model_dump(mode="json", exclude_defaults=True)


# query strings of the export routes: the documented parameters, validated by FastAPI before
# ``filters_from_query`` reads the same names into ``ExportFilters``


class _ExportQuery(_CommonFilters):
    output: Literal["ndjson", "json", "parquet"] | None = Field(
        default=None,
        description="ndjson (default), json (an array) or parquet; or an Accept header",
    )
    labeler: Text | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        description="labeler_id by username (404 if unknown)",
    )
    after: str | None = Field(
        default=None, pattern=RECORD_CURSOR_PATTERN, description="resume after this record id"
    )
    exclude_labeler: str | None = Field(
        default=None, pattern=ID_LIST_PATTERN, description="leave out these labeler ids: 3,7"
    )


class ComparisonsQuery(_ExportQuery, _LabelFilters):
    format: ComparisonFormat | None = Field(
        default=None, description="rankings (default), pairs, or consensus (one ranking per task)"
    )
    after: str | None = Field(
        default=None,
        pattern=CURSOR_PATTERN,
        description="resume after this record id; with format=pairs also a pair_id '<group_id>:<n>'",
    )


class DemonstrationsQuery(_ExportQuery, _LabelFilters):
    pass


class PromptsQuery(_ExportQuery, _PromptFilters):
    pass


# body of POST /api/v1/export/snapshots: one shape per export, told apart by ``export``


class _SnapshotFilters(_CommonFilters):
    exclude_labeler: list[PositiveId] = Field(default_factory=list, max_length=1000)


class ComparisonsSnapshot(_SnapshotFilters, _LabelFilters):
    export: Literal["comparisons"]
    format: ComparisonFormat | None = None


class DemonstrationsSnapshot(_SnapshotFilters, _LabelFilters):
    export: Literal["demonstrations"]


class PromptsSnapshot(_SnapshotFilters, _PromptFilters):
    export: Literal["prompts"]


SnapshotRequest = Annotated[
    ComparisonsSnapshot | DemonstrationsSnapshot | PromptsSnapshot, Field(discriminator="export")
]


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
