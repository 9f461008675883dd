"""Export filters and snapshot shapes for the export API, the CLI and the jobs worker."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from app.models.prompts import Split
from app.schemas import INT32_MAX, DbId, Text, aware_utc

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
