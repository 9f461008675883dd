"""Where the PII filter applies (``pii_splits``) and what a hit does (``pii_policy``)."""

from __future__ import annotations

from sqlalchemy import delete
from sqlalchemy.orm import Session

from app.config import get_settings
from app.models import DedupKey, Prompt, PromptStatus
from app.services.curation.pii import PiiScan, get_pii_filter
from app.services.curation.quota import release_one


def scanned_split(split: str | None) -> bool:
    return split is not None and split in get_settings().pii_splits


def drop_reason(scan: PiiScan) -> str:
    found = ", ".join(f"{entity} x{count}" for entity, count in sorted(scan.counts.items()))
    return f"contains PII ({found}) and the PII policy is 'drop'"


def apply_pii_to_existing(session: Session, prompts: list[Prompt]) -> None:
    """Scan stored prompts that were never scanned (moved into a scanned split by a pin)."""
    pii_filter = get_pii_filter()
    drop = get_settings().pii_policy == "drop"
    for prompt in prompts:
        if prompt.pii is not None:
            continue
        scan = pii_filter.scan(prompt.text)
        prompt.text = scan.text
        prompt.pii = scan.counts
        if scan.found and drop and prompt.status != PromptStatus.rejected.value:
            if prompt.status == PromptStatus.accepted.value:
                release_one(session, prompt.user_id)
                session.execute(delete(DedupKey).where(DedupKey.prompt_id == prompt.id))
            prompt.status = PromptStatus.pii_dropped.value
            prompt.reason = drop_reason(scan)
