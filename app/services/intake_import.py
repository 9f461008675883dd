"""Bulk import of a JSONL file of prompts through the intake pipeline (``prefloop prompts import``)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from sqlalchemy.orm import Session

from app.services import Invalid
from app.services.intake import BATCH_SIZE, ingest_prompts

FIELDS = ("text", "user_id", "external_id", "use_case", "metadata")


@dataclass
class ImportSummary:
    lines: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)


def count_lines(path: Path) -> int:
    with path.open("rb") as fh:
        return sum(1 for line in fh if line.strip())


def _parsed_lines(fh: TextIO) -> Iterator[tuple[int, Any]]:
    """(line number, item) per non-blank line; an unreadable line yields a rejection reason."""
    for number, line in enumerate(fh, start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            yield number, f"line {number} is not valid JSON ({exc.msg})"
            continue
        if isinstance(value, dict):
            # only the API's fields: a file cannot set what the labeler door sets
            value = {k: value[k] for k in FIELDS if k in value}
        yield number, value


def import_jsonl(
    session: Session,
    path: Path,
    *,
    on_batch: Callable[[int], None] | None = None,
    report: TextIO | None = None,
) -> ImportSummary:
    """Ingest every line of ``path`` (one prompt object per line) in batches; never raises on
    bad lines (they are counted as rejected with the reason)."""
    if not path.is_file():
        raise Invalid(f"no such file: {path}", field="file")
    summary = ImportSummary()
    with path.open(encoding="utf-8", errors="replace") as fh:
        batch: list[tuple[int, Any]] = []
        for entry in _parsed_lines(fh):
            batch.append(entry)
            if len(batch) == BATCH_SIZE:
                _flush(session, batch, summary, report, on_batch)
                batch = []
        if batch:
            _flush(session, batch, summary, report, on_batch)
    return summary


def _flush(
    session: Session,
    batch: list[tuple[int, Any]],
    summary: ImportSummary,
    report: TextIO | None,
    on_batch: Callable[[int], None] | None,
) -> None:
    items = [value for _, value in batch if not isinstance(value, str)]
    results = iter(ingest_prompts(session, items, source="api"))
    for number, value in batch:
        if isinstance(value, str):
            result: dict[str, Any] = {
                "external_id": None,
                "status": "rejected",
                "prompt_id": None,
                "split": None,
                "reason": value,
            }
        else:
            result = next(results)
        summary.lines += 1
        summary.statuses[result["status"]] += 1
        if result["status"] == "rejected" and result["reason"]:
            summary.reasons[result["reason"].split(";")[0][:80]] += 1
        if report is not None:
            report.write(json.dumps({"line": number, **result}) + "\n")
    if on_batch is not None:
        on_batch(len(batch))
