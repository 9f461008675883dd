"""Export API: labeled data out, streamed, and frozen snapshots of it."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, StreamingResponse
from sqlalchemy.orm import Session

from app.api.errors import errors
from app.config import get_settings
from app.db import NO_DATABASE_AFTER_START
from app.deps import ResearcherDep, SessionDep, researcher
from app.models import Snapshot
from app.schemas import DbId
from app.schemas.export import (
    ComparisonsQuery,
    ComparisonsSnapshot,
    DemonstrationsQuery,
    PromptsQuery,
    SnapshotOut,
    SnapshotRequest,
)
from app.services import Busy, NotFound
from app.services import export as export_service
from app.services.export import ExportStream, create_snapshot
from app.services.export_formats import OUTPUTS, choose_output, encode
from app.services.export_params import filters_from_query, parse_filters

router = APIRouter(prefix="/api/v1/export", tags=["export"], dependencies=[Depends(researcher)])


@lru_cache(maxsize=1)
def _streams(bound: int) -> threading.BoundedSemaphore:
    """The exports this process streams at once (``PREFLOOP_EXPORT_STREAMS``)."""
    return threading.BoundedSemaphore(bound)


def _stream(request: Request, session: Session, kind: str) -> StreamingResponse:
    filters = filters_from_query(session, request.query_params.multi_items())
    chosen = choose_output(request.query_params.get("output"), request.headers.get("accept"))
    # each stream holds a database connection while its client reads, as fast or as slowly as
    # it likes: bounded, so that exports never hold every place the labelers need
    bound = get_settings().export_streams
    streams = _streams(bound)
    if not streams.acquire(blocking=False):
        raise Busy(
            f"{bound} exports are being streamed by this server (PREFLOOP_EXPORT_STREAMS); "
            "retry in a moment"
        )
    try:
        # the request's session lives until the response is sent; end its transaction so it
        # holds no lock (SQLite) while the stream reads on a session of its own
        session.commit()
        stream = ExportStream(kind, filters, request.query_params.get("format"))
        media_type, suffix = OUTPUTS[chosen]
        name = "-".join(p for p in (kind, stream.fmt, filters.split and filters.split.value) if p)
        headers = {
            "X-Total-Count": str(stream.count),
            "Content-Disposition": f'attachment; filename="{name}.{suffix}"',
            "Cache-Control": "no-store",
        }
        body = encode(stream, chosen, kind, stream.fmt)
    except BaseException:
        streams.release()
        raise
    return _ClosingStreamingResponse(
        body, stream, streams.release, media_type=media_type, headers=headers
    )


class _ClosingStreamingResponse(StreamingResponse):
    """Ends the export's read when the response ends, also when the client goes away
    mid-stream: Starlette then drops the iterator, and its transaction would stay open until
    the garbage collector found it. Then gives the stream's place back (``done``)."""

    def __init__(
        self, body: Iterator[bytes], stream: ExportStream, done: Callable[[], None], **kwargs: Any
    ):
        super().__init__(body, **kwargs)
        self._body, self._stream, self._done = body, stream, done

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                await run_in_threadpool(self._close)

    def _close(self) -> None:
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
            self._stream.close()
        finally:
            done, self._done = self._done, _nothing
            done()


def _nothing() -> None:
    pass


# what the streams are, by ``output`` (or Accept): one JSON record a line, an array, Parquet
STREAMED: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "the records, streamed; `X-Total-Count` says how many",
        "content": {
            "application/x-ndjson": {"schema": {"type": "string"}},
            "application/json": {"schema": {"type": "array", "items": {"type": "object"}}},
            "application/vnd.apache.parquet": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}


@router.get("/comparisons", response_class=StreamingResponse, responses={**STREAMED, **errors(404)})
def export_comparisons(
    request: Request,
    session: SessionDep,
    _query: Annotated[ComparisonsQuery, Query()],
) -> StreamingResponse:
    """Rankings (one record per submitted ranking) or pairs (one per better/worse pair).
    Besides the types: since before until, labeler or labeler_id (not both), a pair_id cursor
    with format=pairs only, a held-out labeler with include_held_out_labelers only (else 422)."""
    return _stream(request, session, "comparisons")


@router.get(
    "/demonstrations", response_class=StreamingResponse, responses={**STREAMED, **errors(404)}
)
def export_demonstrations(
    request: Request,
    session: SessionDep,
    _query: Annotated[DemonstrationsQuery, Query()],
) -> StreamingResponse:
    """Labeler demonstrations as prompt/completion records (the SFT data set)."""
    return _stream(request, session, "demonstrations")


@router.get("/prompts", response_class=StreamingResponse, responses={**STREAMED, **errors(404)})
def export_prompts(
    request: Request,
    session: SessionDep,
    _query: Annotated[PromptsQuery, Query()],
) -> StreamingResponse:
    """Accepted prompts, no labels needed."""
    return _stream(request, session, "prompts")


def _snapshot_out(snapshot: Snapshot) -> SnapshotOut:
    path = Path(snapshot.path)
    return SnapshotOut(
        snapshot_id=snapshot.id,
        export=snapshot.dataset,
        format=snapshot.format,
        filters=snapshot.filters,
        row_count=snapshot.row_count,
        sha256=snapshot.sha256,
        bytes=path.stat().st_size if path.exists() else None,
        created_by_id=snapshot.created_by_id,
        created_at=snapshot.created_at,
        download_url=f"/api/v1/export/snapshots/{snapshot.id}/download",
    )


@router.post("/snapshots", status_code=201, response_model=SnapshotOut, responses=errors(404))
def create_export_snapshot(
    body: SnapshotRequest,
    session: SessionDep,
    principal: ResearcherDep,
) -> SnapshotOut:
    """Freeze an export to a content-hashed file, so a job and a later audit read the same rows."""
    values = body.model_dump(exclude={"export", "format"}, exclude_defaults=True)
    filters = parse_filters(values)
    session.commit()  # no open transaction while the export reads (SQLite has one writer)
    fmt = body.format if isinstance(body, ComparisonsSnapshot) else None
    snapshot = create_snapshot(session, body.export, filters, fmt, principal.user)
    session.commit()
    return _snapshot_out(snapshot)


@router.get("/snapshots", response_model=list[SnapshotOut])
def list_snapshots(
    session: SessionDep,
    limit: int = Query(50, ge=1, le=500),
) -> list[SnapshotOut]:
    """The newest snapshots first."""
    return [_snapshot_out(s) for s in export_service.list_snapshots(session, limit)]


@router.get("/snapshots/{snapshot_id}", response_model=SnapshotOut)
def get_snapshot(
    snapshot_id: DbId,
    session: SessionDep,
) -> SnapshotOut:
    return _snapshot_out(export_service.get_snapshot(session, snapshot_id))


@router.get(
    "/snapshots/{snapshot_id}/download",
    response_class=FileResponse,
    responses={
        200: {
            "description": "the snapshot's records, one JSON record a line",
            "content": {"application/x-ndjson": {"schema": {"type": "string"}}},
        }
    },
)
def download_snapshot(
    snapshot_id: DbId,
    session: SessionDep,
    request: Request,
) -> FileResponse:
    """The snapshot's file, byte for byte (its sha256 in ``X-Content-SHA256``)."""
    snapshot = export_service.get_snapshot(session, snapshot_id)
    path = Path(snapshot.path)
    if not path.is_file():
        raise NotFound(f"the file of snapshot {snapshot_id} is missing from the artifact store")
    name = f"snapshot-{snapshot.id}-{snapshot.dataset}.jsonl"
    # the file is sent from disk: its connection goes back to the pool now, and the request's
    # place at the database gate as the file starts (a slow download holds neither)
    session.close()
    request.scope[NO_DATABASE_AFTER_START] = True
    return FileResponse(
        path,
        media_type=OUTPUTS["ndjson"][0],
        filename=name,
        headers={
            "X-Total-Count": str(snapshot.row_count),
            "X-Content-SHA256": snapshot.sha256,
            "ETag": f'"{snapshot.sha256}"',
        },
    )
