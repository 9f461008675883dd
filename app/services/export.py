"""Export: comparisons (rankings or pairs), demonstrations and prompts, by split, streamed.

Only accepted prompts appear (never duplicates, over-cap or PII-dropped ones), with their
stored text, which is the PII-redacted text for scanned splits. Labels of held-out labelers
are left out unless asked for, and so are skipped tasks.

Records are read by keyset pagination on the record id (constant memory), which is also the
resume cursor ``after``:
- rankings: ``ranking_id``; demonstrations: ``demonstration_id``; prompts: ``prompt_id``;
- pairs: ``pair_id`` = ``"<group_id>:<n>"``, the n-th pair (from 0) of ranking ``group_id``;
  ``after=<group_id>`` resumes after a whole ranking.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import Integer, Select, Text, any_, bindparam, cast, func, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session, aliased

from app.config import get_settings
from app.db import get_readonly_sessionmaker, is_postgres
from app.models import Completion, Ranking, RankingEntry, Snapshot, User
from app.schemas.export import ExportFilters
from app.services import NotFound
from app.services.export_consensus import consensus_records, count_consensus
from app.services.export_formats import chunked, encode_json
from app.services.export_queries import Cursor, base_query, id_column, validate_filters
from app.services.judgment_scores import gold_accuracy_by_labeler

# rankings (or demonstrations, prompts) read per query; a K=9 page is 36x as many pairs
PAGE_SIZE = 500
_NO_FLAGS = (None, "[]", "null")


def _count(session: Session, kind: str, fmt: str | None, filters: ExportFilters) -> int:
    cursor = Cursor.parse(filters.after)
    if fmt == "consensus":
        return count_consensus(session, filters, cursor.last_id)
    base = base_query(kind, filters).where(id_column(kind) > cursor.last_id)
    if fmt != "pairs":
        return session.scalar(select(func.count()).select_from(base.subquery())) or 0
    groups = base.subquery()
    better, worse = aliased(RankingEntry), aliased(RankingEntry)
    pairs = (
        select(func.count())
        .select_from(groups)
        .join(better, better.ranking_id == groups.c.id)
        .join(worse, (worse.ranking_id == groups.c.id) & (better.rank < worse.rank))
    )
    total = session.scalar(pairs) or 0
    if cursor.pair is not None:  # the rest of the ranking the cursor is inside
        head = base_query(kind, filters).where(Ranking.id == cursor.last_id)
        for page in _ranking_pages(session, head):
            total += sum(1 for n, _ in _pairs_of(page[0]) if n > cursor.pair)
    return total


def _rows(session: Session, query: Select[*tuple[Any, ...]]) -> list[Any]:
    """Plain Core rows (the ORM's result machinery costs more than the query here)."""
    return list(session.connection().execute(query).all())


def _in(session: Session, column: Any, ids: list[int]) -> Any:
    """``column IN ids``; on PostgreSQL as ``= ANY(array)``, one parameter instead of
    thousands (the driver parses every new query text, and page sizes vary)."""
    if is_postgres(session):
        return column == any_(bindparam(None, ids, type_=ARRAY(Integer)))
    return column.in_(ids)


def _entries(session: Session, ranking_ids: list[int]) -> dict[int, list[dict[str, Any]]]:
    """The completions of each ranking, best first. Two index lookups rather than a join:
    joined, PostgreSQL may hash the whole completions table for every page."""
    query = (
        select(
            RankingEntry.ranking_id,
            RankingEntry.completion_id,
            RankingEntry.rank,
            RankingEntry.likert,
            # as text: most are "[]", and decoding JSON per row costs more than the query
            cast(RankingEntry.flags, Text),
        )
        .where(_in(session, RankingEntry.ranking_id, ranking_ids))
        .order_by(RankingEntry.ranking_id, RankingEntry.rank, RankingEntry.completion_id)
    )
    entries = _rows(session, query)
    wanted = sorted({e.completion_id for e in entries})
    texts = dict(
        _rows(
            session,
            select(Completion.id, Completion.text).where(_in(session, Completion.id, wanted)),
        )
    )
    by_ranking: dict[int, list[dict[str, Any]]] = {rid: [] for rid in ranking_ids}
    for rid, cid, rank, likert, flags in entries:
        by_ranking[rid].append(
            {
                "completion_id": cid,
                "text": texts[cid],
                "rank": rank,
                "likert": likert,
                "flags": [] if flags in _NO_FLAGS else json.loads(flags),
            }
        )
    return by_ranking


def _ranking_pages(
    session: Session, query: Select[*tuple[Any, ...]]
) -> Iterator[list[dict[str, Any]]]:
    """Ranking records, a page at a time, keyset-paginated on the ranking id. Each carries
    its task's agreement and its labeler's gold accuracy (docs/quality.md)."""
    gold = gold_accuracy_by_labeler(session)
    last = 0
    while True:
        rows = _rows(session, query.where(Ranking.id > last).limit(PAGE_SIZE))
        if not rows:
            return
        entries = _entries(session, [r.id for r in rows])
        yield [
            {
                "ranking_id": r.id,
                "prompt_id": r.prompt_id,
                "prompt": r.text,
                "split": r.split,
                "use_case": r.use_case,
                "labeler_id": r.labeler_id,
                "k": r.k,
                "task_id": r.task_id,
                "agreement": r.agreement_credit / r.agreement_pairs if r.agreement_pairs else None,
                "gold_accuracy": gold.get(r.labeler_id),
                "completions": entries[r.id],
            }
            for r in rows
        ]
        last = rows[-1].id


def _pairs_of(ranking: dict[str, Any], as_json: bool = False) -> Iterator[tuple[int, Any]]:
    """Every (better, worse) pair of a ranking, ties left out, in a stable order, with its
    index inside the group. ``as_json``: each pair as its JSON text, byte for byte what
    ``encode_json`` makes of the dict, with every text encoded once per ranking, not per pair.
    """
    completions = ranking["completions"]  # sorted by (rank, completion_id)
    group = ranking["ranking_id"]
    if as_json:
        head = (
            f'{{"pair_id":"{group}:%d","group_id":{group},"prompt_id":{ranking["prompt_id"]},'
            f'"prompt":{encode_json(ranking["prompt"])},'
        )
        tail = (
            f'"split":{encode_json(ranking["split"])},'
            f'"labeler_id":{encode_json(ranking["labeler_id"])},'
            f'"agreement":{encode_json(ranking["agreement"])},'
            f'"gold_accuracy":{encode_json(ranking["gold_accuracy"])}}}'
        )
        texts = [encode_json(c["text"]) for c in completions]
    n = 0
    for i, better in enumerate(completions):
        for j in range(i + 1, len(completions)):
            worse = completions[j]
            if worse["rank"] == better["rank"]:
                continue
            if as_json:
                yield (
                    n,
                    (
                        f'{head % n}"chosen":{texts[i]},"rejected":{texts[j]},'
                        f'"chosen_completion_id":{better["completion_id"]},'
                        f'"rejected_completion_id":{worse["completion_id"]},{tail}'
                    ),
                )
            else:
                yield (
                    n,
                    {
                        "pair_id": f"{group}:{n}",
                        "group_id": group,
                        "prompt_id": ranking["prompt_id"],
                        "prompt": ranking["prompt"],
                        "chosen": better["text"],
                        "rejected": worse["text"],
                        "chosen_completion_id": better["completion_id"],
                        "rejected_completion_id": worse["completion_id"],
                        "split": ranking["split"],
                        "labeler_id": ranking["labeler_id"],
                        "agreement": ranking["agreement"],
                        "gold_accuracy": ranking["gold_accuracy"],
                    },
                )
            n += 1


def _simple_pages(
    session: Session, kind: str, query: Select[*tuple[Any, ...]]
) -> Iterator[dict[str, Any]]:
    record_id = id_column(kind)
    last = 0
    while True:
        rows = _rows(session, query.where(record_id > last).limit(PAGE_SIZE))
        if not rows:
            return
        for r in rows:
            if kind == "demonstrations":
                yield {
                    "demonstration_id": r.id,
                    "prompt_id": r.prompt_id,
                    "prompt": r.text,
                    "completion": r.completion,
                    "split": r.split,
                    "use_case": r.use_case,
                    "labeler_id": r.labeler_id,
                }
            else:
                yield {
                    "prompt_id": r.id,
                    "prompt": r.text,
                    "split": r.split,
                    "source": r.source,
                    "kind": r.kind,
                    "use_case": r.use_case,
                }
        last = rows[-1].id


def _records(
    session: Session, kind: str, fmt: str | None, filters: ExportFilters, as_json: bool = False
) -> Iterator[Any]:
    """The records as dicts, or (``as_json``) as their compact JSON texts."""
    cursor = Cursor.parse(filters.after)
    if fmt == "consensus":
        consensus = consensus_records(session, filters, cursor.last_id)
        yield from (map(encode_json, consensus) if as_json else consensus)
        return
    record_id = id_column(kind)
    query = base_query(kind, filters)
    if kind != "comparisons" or fmt == "rankings":
        if kind == "comparisons":
            pages = _ranking_pages(session, query.where(Ranking.id > cursor.last_id))
            records: Iterator[dict[str, Any]] = (r for page in pages for r in page)
        else:
            records = _simple_pages(session, kind, query.where(record_id > cursor.last_id))
        yield from (map(encode_json, records) if as_json else records)
        return
    if cursor.pair is not None:  # first the rest of the ranking the cursor is inside
        for page in _ranking_pages(session, query.where(Ranking.id == cursor.last_id)):
            yield from (pair for n, pair in _pairs_of(page[0], as_json) if n > cursor.pair)
    for page in _ranking_pages(session, query.where(Ranking.id > cursor.last_id)):
        for ranking in page:
            for _, pair in _pairs_of(ranking, as_json):
                yield pair


# the contract used by the jobs worker ---------------------------------------------------------


def iter_records(
    session: Session, kind: str, filters: ExportFilters, fmt: str | None = None
) -> Iterator[dict[str, Any]]:
    """The export's records in id order, read page by page on ``session``."""
    fmt = validate_filters(session, kind, filters, fmt)
    return _records(session, kind, fmt, filters)


def count_records(
    session: Session, kind: str, filters: ExportFilters, fmt: str | None = None
) -> int:
    """How many records ``iter_records`` yields for the same arguments."""
    fmt = validate_filters(session, kind, filters, fmt)
    return _count(session, kind, fmt, filters)


class ExportStream:
    """One consistent export on a read-only session of its own: ``count``, then the records.

    The HTTP response streams after the request has returned, so the stream cannot use the
    request's session. Count and records come from one transaction that sees one snapshot
    (REPEATABLE READ on PostgreSQL; a WAL read transaction on SQLite, which blocks no
    writer), so ``count`` is exactly the number of records. Iterating to the end closes the
    session; otherwise call ``close()`` (or use ``with``).
    """

    def __init__(self, kind: str, filters: ExportFilters, fmt: str | None):
        self.kind, self.filters = kind, filters
        self.session = get_readonly_sessionmaker()()
        try:
            if is_postgres(self.session):
                self.session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
            self.fmt = validate_filters(self.session, kind, filters, fmt)
            self.count = _count(self.session, kind, self.fmt, filters)
        except BaseException:
            self.close()
            raise

    def __iter__(self) -> Iterator[dict[str, Any]]:
        try:
            yield from _records(self.session, self.kind, self.fmt, self.filters)
        finally:
            self.close()

    def json_lines(self) -> Iterator[str]:
        """The records as compact JSON texts (faster than encoding the dicts for pairs)."""
        try:
            yield from _records(self.session, self.kind, self.fmt, self.filters, as_json=True)
        finally:
            self.close()

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> ExportStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def list_snapshots(session: Session, limit: int = 50, dataset: str | None = None) -> list[Snapshot]:
    """The newest snapshots first (only of ``dataset`` if given)."""
    query = select(Snapshot).order_by(Snapshot.id.desc()).limit(limit)
    if dataset is not None:
        query = query.where(Snapshot.dataset == dataset)
    return list(session.scalars(query))


def get_snapshot(session: Session, snapshot_id: int) -> Snapshot:
    snapshot = session.get(Snapshot, snapshot_id)
    if snapshot is None:
        raise NotFound(f"no snapshot with id {snapshot_id}", field="snapshot_id")
    return snapshot


def snapshots_dir() -> Path:
    return get_settings().artifacts_path / "snapshots"


def create_snapshot(
    session: Session,
    kind: str,
    filters: ExportFilters,
    fmt: str | None = None,
    created_by: User | None = None,
) -> Snapshot:
    """Freeze an export into a content-hashed JSONL file and record it (flushed, not committed).

    The file is named by the sha256 of its bytes, so equal exports share one file.
    """
    directory = snapshots_dir()
    directory.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    rows = 0
    with ExportStream(kind, filters, fmt) as stream:
        fmt = stream.fmt

        def counted() -> Iterator[str]:
            nonlocal rows
            for line in stream.json_lines():
                rows += 1
                yield line + "\n"

        fd, tmp_name = tempfile.mkstemp(dir=directory, prefix=".partial-", suffix=".jsonl")
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in chunked(counted()):
                    digest.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            final = directory / f"{digest.hexdigest()}.jsonl"
            os.replace(tmp_name, final)  # atomic: a reader never sees half a file
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise
    snapshot = Snapshot(
        dataset=kind,
        format=fmt or "records",
        filters=filters.as_json(),
        row_count=rows,
        sha256=digest.hexdigest(),
        path=str(final),
        created_by_id=created_by.id if created_by is not None else None,
    )
    session.add(snapshot)
    session.flush()
    return snapshot
