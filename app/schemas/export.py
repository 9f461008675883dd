"""Export filters and snapshot shapes for the export API, the CLI and the jobs worker."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from app.models.prompts import Split
from app.schemas import INT32_MAX, DbId, Text, aware_utc

ExportKind = Literal["comparisons", "demonstrations", "prompts"]
ComparisonFormat = Literal["rankings", "pairs", "consensus"]
KINDS: tuple[str, ...] = ("comparisons", "demonstrations", "prompts")
COMPARISON_FORMATS: tuple[str, ...] = ("rankings", "pairs", "consensus")
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
    # only labels of labelers whose gold accuracy (docs/quality.md) is at least this; a
    # labeler who has judged no gold task yet has none, and is left out
    min_gold_accuracy: float | None = Field(default=None, ge=0.0, le=1.0)
    # labeler ids whose labels are left out ("3,7" in a query string)
    exclude_labeler: list[Annotated[int, Field(ge=1, le=INT32_MAX)]] = Field(
        default_factory=list, max_length=1000
    )

    @field_validator("since", "until")
    @classmethod
    def _aware_utc(cls, value: datetime | None) -> datetime | None:
        return aware_utc(value)

    @field_validator("exclude_labeler", mode="before")
    @classmethod
    def _id_list(cls, value: object) -> object:
        """``"3,7"`` (a query string) as ``[3, 7]``."""
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    def as_json(self) -> dict[str, Any]:
        """The filters that are set, JSON-ready (what a snapshot records)."""
        return self.model_dump(mode="json", exclude_defaults=True)


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
    min_gold_accuracy: float | None = None
    exclude_labeler: list[DbId] = Field(default_factory=list)


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
