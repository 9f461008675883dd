"""The one pipeline every prompt passes, whichever door it came in by (API, CLI, labeler form).

``ingest_prompts`` validates, assigns the user's split, scans for PII, de-duplicates and applies
the per-user cap, in batches: a handful of bulk queries per batch and one transaction per batch
(it commits). Per item it returns ``{"external_id", "status", "prompt_id", "split", "reason"}``
in input order, where status is accepted | duplicate | over_cap | rejected.

Tenants: ``external_id`` and the customer's ``user_id`` (its cap, split and pins) belong to the
ingesting client, the account whose token sent them (``client_of``). The same external ID or
user ID from another client is another prompt and another user; a text another client sent
first is a ``duplicate``, answered without that client's prompt id, split or user.
"""

from __future__ import annotations

import copy
import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from app.config import get_settings
from app.db import is_postgres
from app.models import Prompt, PromptKind, PromptSource, PromptStatus, User
from app.services.bulk_copy import copy_rows
from app.services.curation import dedup, quota
from app.services.curation.pii_policy import drop_reason, scanned_split
from app.services.curation.pii_pool import ScanFailure, scan_texts
from app.services.curation.pii_scan import PiiScan
from app.services.curation.splits import splits_for_users
from app.services.queue_upkeep import ensure_demonstration_tasks
from app.services.use_cases import use_case_lookup

BATCH_SIZE = 1000
MAX_RETRIES = 3
ID_MAX_CHARS = 255  # user_id and external_id columns
METADATA_MAX_DEPTH = 32  # nesting levels of a prompt's metadata
# statuses stored on prompts -> status reported to the submitter
REPORTED = {PromptStatus.pii_dropped.value: PromptStatus.rejected.value}


@dataclass
class _Item:
    index: int
    text: str
    user_id: str
    external_id: str | None
    use_case: str | None
    metadata: dict[str, Any] | None
    kind: str
    structure: dict[str, Any] | None
    split: str = ""
    scan: PiiScan | ScanFailure | None = None
    key: str = ""
    status: str = ""
    reason: str | None = None
    duplicate_of: int | None = None
    duplicate_of_item: int | None = None  # index of an earlier item of the same batch
    prompt_id: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _is_unicode(value: str) -> bool:
    """False for a string with a lone surrogate (JSON can escape one: "\\ud800"), which
    neither database nor the PII scanner can encode."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _metadata_problem(metadata: dict[str, Any]) -> str | None:
    """Why ``metadata`` cannot be stored as JSON on both databases (PostgreSQL's JSONB takes
    no NUL character and no NaN or Infinity), or None; iterative, so depth cannot overflow."""
    stack: list[tuple[Any, int]] = [(metadata, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, str) and ("\x00" in value or not _is_unicode(value)):
            return "metadata must be valid Unicode text without NUL characters"
        if isinstance(value, float) and not math.isfinite(value):
            return "metadata must not contain NaN or Infinity (not JSON)"
        if isinstance(value, dict | list):
            if depth > METADATA_MAX_DEPTH:
                return f"metadata is nested more than {METADATA_MAX_DEPTH} levels deep"
            if isinstance(value, dict):
                stack.extend((key, depth) for key in value)
                stack.extend((item, depth + 1) for item in value.values())
            else:
                stack.extend((item, depth + 1) for item in value)
    return None


def client_of(source: str, author: User | None) -> str:
    """The namespace of a prompt's external ID and user ID: the ingesting account's username;
    "" for the command-line import and the demo (the operator) and for labelers' own prompts
    (their user ID, ``labeler:<id>``, is unique already)."""
    if source == PromptSource.labeler.value or author is None:
        return ""
    return author.username


def labeler_user_id(user: User) -> str:
    """The user ID under which a labeler's own prompts are capped and split."""
    return f"labeler:{user.id}"


def _result(
    external_id: Any, status: str, prompt_id: int | None, split: str | None, reason: str | None
) -> dict[str, Any]:
    return {
        "external_id": external_id,
        "status": REPORTED.get(status, status),
        "prompt_id": prompt_id,
        "split": split,
        "reason": reason,
    }


def _rejected(raw: Any, reason: str) -> dict[str, Any]:
    external_id = raw.get("external_id") if isinstance(raw, dict) else None
    return _result(
        external_id if isinstance(external_id, str) else None, "rejected", None, None, reason
    )


def _validate(
    raw: Any, index: int, *, source: str, author: User | None, use_cases: dict[str, str]
) -> _Item | str:
    """An ``_Item`` for a well-formed prompt, else the reason it is rejected."""
    if not isinstance(raw, dict):
        return "item must be an object with 'text' and 'user_id'"
    text = raw.get("text")
    if not isinstance(text, str):
        kind = "null" if text is None else type(text).__name__
        return f"text must be a string (non-text input: {kind})"
    if not text.strip():
        return "text is empty"
    limit = get_settings().prompt_max_chars
    if len(text) > limit:
        return f"text is {len(text)} characters; the limit is {limit}"
    if "\x00" in text:
        return "text contains a NUL character (binary data, not text)"
    if not _is_unicode(text):
        return "text is not valid Unicode (half of a UTF-16 surrogate pair)"
    labeler = source == PromptSource.labeler.value and author is not None
    if labeler and author is not None:  # (labeler implies an author; said for the checker)
        user_id: Any = labeler_user_id(author)
    else:
        user_id = raw.get("user_id")
    if not isinstance(user_id, str) or not user_id.strip():
        return "user_id must be a non-empty string"
    external_id = raw.get("external_id")
    if external_id is not None and (not isinstance(external_id, str) or not external_id.strip()):
        return "external_id must be a non-empty string or null"
    for name, value in (("user_id", user_id), ("external_id", external_id)):
        if value is not None and (len(value) > ID_MAX_CHARS or "\x00" in value):
            return f"{name} must be at most {ID_MAX_CHARS} characters of text"
    use_case = raw.get("use_case")
    if use_case is not None:
        if not isinstance(use_case, str) or use_case.strip().casefold() not in use_cases:
            names = ", ".join(sorted(use_cases.values()))
            return f"unknown use case {use_case!r}; choose one of: {names}"
        use_case = use_cases[use_case.strip().casefold()]
    metadata = raw.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        return "metadata must be an object or null"
    if metadata is not None and (problem := _metadata_problem(metadata)):
        return problem
    return _Item(
        index=index,
        text=text,
        user_id=user_id.strip(),
        external_id=external_id.strip() if external_id else None,
        use_case=use_case,
        metadata=metadata,
        # only the labeler door writes the kinds and few-shot structure of its own prompts
        kind=(raw.get("kind") if labeler else None) or PromptKind.api.value,
        structure=raw.get("structure") if labeler else None,
    )


def ingest_prompts(
    session: Session,
    items: list[dict[str, Any]],
    *,
    source: str = "api",
    author: User | None = None,
) -> list[dict[str, Any]]:
    """Run ``items`` through the curation pipeline and store them; commits per batch."""
    results: list[dict[str, Any]] = []
    for start in range(0, len(items), BATCH_SIZE):
        batch = items[start : start + BATCH_SIZE]
        for attempt in range(MAX_RETRIES):
            try:
                results.extend(_ingest_batch(session, batch, source=source, author=author))
                session.commit()
                break
            except (IntegrityError, OperationalError) as exc:
                # a concurrent ingest stored the same external_id first: the retry finds it
                # and answers idempotently (a deadlock report is retried the same way)
                session.rollback()
                retryable = isinstance(exc, IntegrityError) or _is_deadlock(exc)
                if not retryable or attempt == MAX_RETRIES - 1:
                    raise
    accepted = [r["prompt_id"] for r in results if r.get("status") == PromptStatus.accepted.value]
    if accepted:
        # the new prompts' demonstration tasks, so the queue need not look for them (the id
        # range of this request; older prompts without one are the periodic sweep's)
        ensure_demonstration_tasks(session, (min(accepted), max(accepted)))
        session.commit()
    return results


def _is_deadlock(exc: OperationalError) -> bool:
    return getattr(exc.orig, "sqlstate", None) in {"40P01", "40001"}


def _ingest_batch(
    session: Session, batch: list[Any], *, source: str, author: User | None
) -> list[dict[str, Any]]:
    settings = get_settings()
    client = client_of(source, author)
    results: list[dict[str, Any] | None] = [None] * len(batch)
    use_cases = use_case_lookup(session)
    items: list[_Item] = []
    for index, raw in enumerate(batch):
        checked = _validate(raw, index, source=source, author=author, use_cases=use_cases)
        if isinstance(checked, str):
            results[index] = _rejected(raw, checked)
        else:
            items.append(checked)

    # idempotency: an external_id seen before answers with the stored prompt
    external_ids = {i.external_id for i in items if i.external_id}
    if external_ids:
        stored = session.scalars(
            select(Prompt).where(Prompt.client == client, Prompt.external_id.in_(external_ids))
        )
        known = {p.external_id: p for p in stored}
        fresh: list[_Item] = []
        first_of: dict[str, int] = {}
        for item in items:
            prompt = known.get(item.external_id) if item.external_id else None
            if prompt is not None:
                results[item.index] = _result(
                    prompt.external_id, prompt.status, prompt.id, prompt.split, prompt.reason
                )
            elif item.external_id in first_of:
                item.extra["same_as"] = first_of[item.external_id]
            else:
                if item.external_id:
                    first_of[item.external_id] = item.index
                fresh.append(item)
        repeats = [i for i in items if "same_as" in i.extra]
        items = fresh
    else:
        repeats = []

    # PII is the slow part: scan (in the scanner's process pool) outside the write transaction
    # with the splits as they are now, then re-check the splits under the quota locks and scan
    # anything that moved. A text the scanner could not finish is rejected, never stored.
    provisional = splits_for_users(session, client, {i.user_id for i in items})
    session.commit()  # SQLite: release the write lock taken by that read
    failed = _scan_items([i for i in items if scanned_split(provisional[i.user_id])])

    quotas = quota.lock_quotas(session, client, {i.user_id for i in items})
    splits = splits_for_users(session, client, quotas.keys())
    for item in items:
        item.split = splits[item.user_id]
    failed += _scan_items([i for i in items if scanned_split(i.split) and i.scan is None])
    for item in failed:
        results[item.index] = _result(item.external_id, "rejected", None, None, item.reason)
    items = [item for item in items if not isinstance(item.scan, ScanFailure)]
    drop = settings.pii_policy == "drop"
    for item in items:
        if not scanned_split(item.split):
            item.scan = None
        # after redaction: prompts that differ only in their PII are duplicates
        text = item.scan.text if isinstance(item.scan, PiiScan) else item.text
        item.key = dedup.dedup_key(text, settings.dedup_prefix_chars)
        if isinstance(item.scan, PiiScan) and item.scan.found and drop:
            item.status, item.reason = PromptStatus.pii_dropped.value, drop_reason(item.scan)

    # dedup against stored keys, then within the batch; the cap counts accepted prompts only
    owners = dedup.key_owners(session, {i.key for i in items if not i.status})
    claimed_in_batch: dict[str, int] = {}
    granted: dict[str, int] = {}
    cap = settings.prompts_per_user_cap
    for item in items:
        if item.status:
            continue
        if item.key in owners:
            item.status, item.duplicate_of = PromptStatus.duplicate.value, owners[item.key]
        elif item.key in claimed_in_batch:
            item.status = PromptStatus.duplicate.value
            item.duplicate_of_item = claimed_in_batch[item.key]
        elif quotas[item.user_id] + granted.get(item.user_id, 0) < cap:
            item.status = PromptStatus.accepted.value
            granted[item.user_id] = granted.get(item.user_id, 0) + 1
            claimed_in_batch[item.key] = item.index
        else:
            item.status = PromptStatus.over_cap.value
            item.reason = f"user ID {item.user_id!r} already has {cap} accepted prompts (the cap)"

    _store(session, items, source=source, author=author, client=client)
    by_index = {item.index: item for item in items}
    _resolve_duplicates(session, items, by_index, granted)
    quota.store_quotas(session, client, granted)

    for item in items:
        results[item.index] = _result(
            item.external_id, item.status, item.prompt_id, item.split, item.reason
        )
    for item in repeats:
        results[item.index] = results[item.extra["same_as"]]
    return [r for r in results if r is not None]


def _string_slots(value: Any) -> list[tuple[Any, Any]]:
    """(container, key) of every string value nested in ``value`` (dicts and lists)."""
    slots: list[tuple[Any, Any]] = []
    stack = [value]
    while stack:
        node = stack.pop()
        pairs = node.items() if isinstance(node, dict) else enumerate(node)
        for key, child in pairs:
            if isinstance(child, str):
                slots.append((node, key))
            elif isinstance(child, dict | list):
                stack.append(child)
    return slots


def _scan_items(items: list[_Item]) -> list[_Item]:
    """Scan each item's text and the string values of its metadata in one batch; redacts the
    metadata in place. Returns the items the scanner could not finish (``scan`` is then the
    ``ScanFailure`` and ``reason`` says why)."""
    texts: list[str] = []
    owners: list[tuple[_Item, Any, Any]] = []  # (item, container, key); container None: text
    for item in items:
        texts.append(item.text)
        owners.append((item, None, None))
        if item.metadata:
            item.metadata = copy.deepcopy(item.metadata)
            for container, key in _string_slots(item.metadata):
                texts.append(container[key])
                owners.append((item, container, key))
    counts: dict[int, Counter[str]] = {}
    failed: dict[int, _Item] = {}
    for (item, container, key), result in zip(owners, scan_texts(texts), strict=True):
        if isinstance(result, ScanFailure):
            item.scan, item.reason = result, result.reason
            failed[item.index] = item
            continue
        counts.setdefault(item.index, Counter()).update(result.counts)
        if container is None:
            item.scan = result
        else:
            container[key] = result.text
    for item in items:
        if isinstance(item.scan, PiiScan):
            item.scan = PiiScan(text=item.scan.text, counts=dict(counts[item.index]))
    return list(failed.values())


def _store(
    session: Session, items: list[_Item], *, source: str, author: User | None, client: str
) -> None:
    if not items:
        return
    # rows go in input order so ids follow it; two batches sending the same external IDs in
    # different orders can deadlock on PostgreSQL, which aborts one and it is retried. On
    # PostgreSQL by COPY (bulk_copy: a sixth of the time of the INSERT ... RETURNING)
    rows = [
        {
            "text": item.scan.text if isinstance(item.scan, PiiScan) else item.text,
            "source": source,
            "kind": item.kind,
            "user_id": item.user_id,
            "author_id": author.id if author is not None else None,
            "external_id": item.external_id,
            "client": client,
            "use_case": item.use_case,
            "structure": item.structure,
            "metadata_": item.metadata,
            "split": item.split,
            "status": item.status,
            "reason": item.reason,
            "duplicate_of_id": item.duplicate_of,
            "dedup_key": item.key,
            "pii": item.scan.counts if isinstance(item.scan, PiiScan) else None,
        }
        for item in items
    ]
    if is_postgres(session):
        ids: Iterable[int] = copy_rows(session, Prompt, rows)
    else:
        ids = session.scalars(
            insert(Prompt).returning(Prompt.id, sort_by_parameter_order=True), rows
        )
    for item, prompt_id in zip(items, ids, strict=True):
        item.prompt_id = prompt_id


def _resolve_duplicates(
    session: Session, items: list[_Item], by_index: dict[int, _Item], granted: dict[str, int]
) -> None:
    """Claim the keys of accepted prompts; ones a concurrent ingest won become duplicates."""
    accepted = {i.key: i for i in items if i.status == PromptStatus.accepted.value}
    won = dedup.claim_keys(session, {key: item.prompt_id for key, item in accepted.items()})  # type: ignore[misc]
    lost = {key: item for key, item in accepted.items() if key not in won}
    owners = dedup.key_owners(session, set(lost)) if lost else {}
    changes: list[dict[str, Any]] = []
    for key, item in lost.items():
        item.status, item.duplicate_of = PromptStatus.duplicate.value, owners[key]
        granted[item.user_id] -= 1
        changes.append(
            {"id": item.prompt_id, "status": item.status, "duplicate_of_id": owners[key]}
        )
    for item in items:
        if item.duplicate_of_item is not None:
            first = by_index[item.duplicate_of_item]
            item.duplicate_of = first.duplicate_of if first.key in lost else first.prompt_id
            changes.append(
                {"id": item.prompt_id, "status": item.status, "duplicate_of_id": item.duplicate_of}
            )
    if changes:
        session.execute(update(Prompt), changes)
