"""Where the PII filter applies (``pii_splits``) and what a hit does (``pii_policy``)."""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from app.config import get_settings
from app.models import Completion, DedupKey, Prompt, PromptStatus
from app.services import Invalid
from app.services.curation.pii_pool import ScanFailure, scan_texts
from app.services.curation.pii_scan import PiiScan
from app.services.curation.quota import release_one


def scanned_split(split: str | None) -> bool:
    return split is not None and split in get_settings().pii_splits


def redact_completion_texts(split: str | None, texts: list[str], field: str) -> list[str]:
    """Completions of a prompt in a scanned split are scanned like it: model outputs and
    vendors' texts reach labelers and exports too. 422 for a text not scanned in time."""
    if not scanned_split(split):
        return texts
    redacted = []
    for i, scan in enumerate(scan_texts(texts)):
        if isinstance(scan, ScanFailure):
            raise Invalid(scan.reason, field=f"{field}.{i}.text")
        redacted.append(scan.text)
    return redacted


def drop_reason(scan: PiiScan) -> str:
    found = ", ".join(f"{entity} x{count}" for entity, count in sorted(scan.counts.items()))
    return f"contains PII ({found}) and the PII policy is 'drop'"


def apply_pii_to_existing(session: Session, prompts: list[Prompt]) -> None:
    """Scan stored prompts that were never scanned (moved into a scanned split by a pin), and
    their completions; a text the scanner cannot finish stops the move (422)."""
    drop = get_settings().pii_policy == "drop"
    unscanned = [p for p in prompts if p.pii is None]
    completions = (
        list(
            session.scalars(
                select(Completion)
                .where(Completion.prompt_id.in_([p.id for p in unscanned]))
                .order_by(Completion.id)
            )
        )
        if unscanned
        else []
    )
    scans = scan_texts([p.text for p in unscanned] + [c.text for c in completions])
    if any(isinstance(scan, ScanFailure) for scan in scans):
        raise Invalid(
            "a prompt or completion of this user could not be scanned for PII in time; "
            "nothing was moved",
            field="user_id",
        )
    for completion, scan in zip(completions, scans[len(unscanned) :], strict=True):
        assert isinstance(scan, PiiScan)
        completion.text = scan.text
    for prompt, scan in zip(unscanned, scans[: len(unscanned)], strict=True):
        assert isinstance(scan, PiiScan)
        prompt.text = scan.text
        prompt.pii = scan.counts
        if scan.found and drop and prompt.status != PromptStatus.rejected.value:
            if prompt.status == PromptStatus.accepted.value:
                release_one(session, prompt.client, prompt.user_id)
                session.execute(delete(DedupKey).where(DedupKey.prompt_id == prompt.id))
            prompt.status = PromptStatus.pii_dropped.value
            prompt.reason = drop_reason(scan)
