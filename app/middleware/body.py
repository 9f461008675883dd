"""A request's body at the edge: its size limit (413), its arrival within
``PREFLOOP_BODY_TIMEOUT_S`` (408), small bodies received in full before the database gate,
large ones spooled with the request's place at the gate given up, and a JSON body's values
counted before anything parses it."""

from __future__ import annotations

import asyncio
import tempfile

import anyio
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app import json_values
from app.clients import credential_of
from app.config import get_settings
from app.middleware.gate import GATE_PLACE, GateTimeout, Place
from app.middleware.replies import WatchedSend, answer

# requests with a body that anyone may send (the login form carries no credentials yet)
PUBLIC_BODY_PATHS = frozenset({"/login", "/logout"})


# the routes whose bodies may be up to PREFLOOP_MAX_REQUEST_BYTES (a batch of prompts or
# outputs); every other body is limited to PREFLOOP_MAX_BODY_BYTES
BULK_BODY_PATHS = frozenset(
    {"/api/v1/prompts", "/api/v1/completions", "/api/v1/evaluations", "/admin/evaluations"}
)


class RequestTooLarge(HTTPException):
    """Raised from ``receive`` when a body without a declared length grows past the limit.

    An HTTPException, so FastAPI's body reading passes it on (it turns other errors into a
    400) and the app's handler answers 413."""

    def __init__(self, limit: int, setting: str) -> None:
        super().__init__(status_code=413, detail=_too_large(None, limit, setting))


def _too_large(size: int | None, limit: int, setting: str) -> str:
    what = f"request body is {size} bytes" if size is not None else "request body is too large"
    return f"{what}; the limit is {limit} bytes ({setting})"


class RequestSizeLimit:
    """413 for a declared Content-Length over the limit, before the app or a read runs; a body
    without a length (chunked) is counted as it arrives and cut off at the limit. The limit is
    ``max_bytes`` for the bulk routes (``BULK_BODY_PATHS``), ``max_body_bytes`` (if lower) for
    every other."""

    def __init__(self, app: ASGIApp, max_bytes: int, max_body_bytes: int | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.max_body_bytes = min(max_bytes, max_body_bytes or max_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"] in BULK_BODY_PATHS or self.max_body_bytes == self.max_bytes:
            limit, setting = self.max_bytes, "PREFLOOP_MAX_REQUEST_BYTES"
        else:
            limit, setting = self.max_body_bytes, "PREFLOOP_MAX_BODY_BYTES"
        size = _declared_length(Headers(scope=scope))
        if size is not None and (size < 0 or size > limit):
            detail = (
                "Content-Length is not a number" if size < 0 else _too_large(size, limit, setting)
            )
            response = JSONResponse(
                {"detail": detail, "field": "body"},
                status_code=400 if size < 0 else 413,
                headers={"Connection": "close"},
            )
            await response(scope, receive, send)
            return
        received = 0

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise RequestTooLarge(limit, setting)
            return message

        watched = WatchedSend(send)
        try:
            await self.app(scope, counted_receive, watched)
        except RequestTooLarge:
            if watched.started:
                raise
            response = JSONResponse(
                {"detail": _too_large(None, limit, setting), "field": "body"},
                status_code=413,
                headers={"Connection": "close"},
            )
            await response(scope, receive, send)


def _declared_length(headers: Headers) -> int | None:
    """The body's declared Content-Length: None without one, -1 when it is not a number."""
    declared = headers.get("content-length")
    if declared is None:
        return None
    try:
        return int(declared)
    except ValueError:
        return -1


def has_body(headers: Headers) -> bool:
    size = _declared_length(headers)
    return size != 0 if size is not None else "transfer-encoding" in headers


# a body of at most this many bytes (declared) arrives with its headers or right after them
SMALL_BODY_BYTES = 64 * 1024


def is_small_body(headers: Headers) -> bool:
    size = _declared_length(headers)
    return size is not None and 0 <= size <= SMALL_BODY_BYTES


class ClientGone(Exception):
    """The client disconnected before its body arrived in full: nobody to answer."""


def _body_timeout(timeout: float) -> str:
    return (
        f"the request body did not arrive within {timeout:g} s (PREFLOOP_BODY_TIMEOUT_S); "
        "nothing was stored"
    )


async def answer_body_timeout(scope: Scope, receive: Receive, send: Send) -> None:
    """408 Request Timeout, and the connection closed (its client is mid-body)."""
    detail = _body_timeout(get_settings().body_timeout_s)
    page = f"<!doctype html><title>Request timeout</title><p>{detail}.</p>"
    body = {"detail": detail, "field": "body"}
    await answer(scope, receive, send, 408, body, page, {"Connection": "close"})


async def _next_piece(receive: Receive) -> tuple[bytes, bool]:
    """The next piece of the body and whether more follows."""
    message = await receive()
    if message["type"] == "http.disconnect":
        raise ClientGone()
    return message.get("body", b""), message.get("more_body", False)


def _replay(first: Message, rest: Receive) -> Receive:
    """``receive`` that gives ``first`` (the whole body), then what the client sends next (its
    disconnect)."""
    pending: Message | None = first

    async def receive() -> Message:
        nonlocal pending
        if pending is not None:
            message, pending = pending, None
            return message
        return await rest()

    return receive


def _may_send_body(scope: Scope) -> bool:
    """Whether the request may get as far as its body: it carries credentials (those the fair
    gate reads, ``app.clients``), or goes to a form anyone may send. Without either,
    ``AuthenticateBeforeBody`` refuses it unread."""
    return scope["path"] in PUBLIC_BODY_PATHS or credential_of(scope) is not None


class ReceiveSmallBody:
    """A body of at most ``SMALL_BODY_BYTES`` (declared) is received in full, within
    ``body_timeout_s``, before the request goes further: before it queues at the database gate
    and before its sender is authenticated (a request with credentials, even forged ones, can
    make the server hold 64 KiB for that long, no more; one without is refused unread further
    in). Bodies arrive with their headers from every well-behaved client; one that
    trickles in holds no place and no connection, and gets 408."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        size = _declared_length(headers)
        if size is None or not 0 < size <= SMALL_BODY_BYTES or not _may_send_body(scope):
            await self.app(scope, receive, send)
            return
        pieces: list[bytes] = []
        try:
            async with asyncio.timeout(get_settings().body_timeout_s):
                more = True
                while more:
                    piece, more = await _next_piece(receive)
                    pieces.append(piece)
        except ClientGone:
            return
        except TimeoutError:
            await answer_body_timeout(scope, receive, send)
            return
        body = {"type": "http.request", "body": b"".join(pieces), "more_body": False}
        await self.app(scope, _replay(body, receive), send)


# a large body is kept in memory up to this size while it arrives, on disk beyond
SPOOL_IN_MEMORY_BYTES = 1024 * 1024


async def _spooled_body(receive: Receive) -> tempfile.SpooledTemporaryFile[bytes]:
    """The whole body of a large or chunked request, each piece within ``body_timeout_s`` of
    the last (its total size is bounded by ``RequestSizeLimit``, which counts ``receive``)."""
    timeout = get_settings().body_timeout_s
    # closed by the caller once the route is done (or below, if the body never arrives)
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY_BYTES)  # noqa: SIM115
    try:
        more = True
        while more:
            with anyio.fail_after(timeout):
                piece, more = await _next_piece(receive)
            spool.write(piece)
    except BaseException:
        spool.close()
        raise
    return spool


def replay_spool(spool: tempfile.SpooledTemporaryFile[bytes], rest: Receive) -> Receive:
    """``receive`` that gives the spooled body in pieces of ``SMALL_BODY_BYTES``, then what
    the client sends next."""
    size = spool.seek(0, 2)
    spool.seek(0)
    done = False

    async def receive() -> Message:
        nonlocal done
        if done:
            return await rest()
        piece = spool.read(SMALL_BODY_BYTES)
        done = spool.tell() >= size
        return {"type": "http.request", "body": piece, "more_body": not done}

    return receive


async def answer_public_form_too_large(scope: Scope, receive: Receive, send: Send) -> None:
    detail = (
        f"a form sent to {scope['path']} is at most {SMALL_BODY_BYTES} bytes, with its "
        "Content-Length declared"
    )
    response = JSONResponse(
        {"detail": detail, "field": "body"}, status_code=413, headers={"Connection": "close"}
    )
    await response(scope, receive, send)


class TooManyValues(Exception):
    def __init__(self, limit: int) -> None:
        self.limit = limit


def _parsed_as_json(headers: Headers) -> bool:
    """Whether FastAPI parses this body as JSON (no content type, or a JSON one)."""
    media_type = headers.get("content-type", "").partition(";")[0].strip().lower()
    return (
        not media_type
        or media_type == "application/json"
        or (media_type.startswith("application/") and media_type.endswith("+json"))
    )


def _check_values(spool: tempfile.SpooledTemporaryFile[bytes]) -> None:
    """``TooManyValues`` for a JSON body whose parse would make more values than allowed (the
    count is bytes operations: ~0.1 s for 32 MiB, its parse up to 3.5 s)."""
    limit = get_settings().max_json_values
    spool.seek(0)
    if not json_values.at_most(spool.read(), limit):
        raise TooManyValues(limit)


async def answer_too_many_values(scope: Scope, receive: Receive, send: Send, limit: int) -> None:
    detail = json_values.too_many_detail(limit)
    page = f"<!doctype html><title>Request too large</title><p>{detail}.</p>"
    await answer(scope, receive, send, 413, {"detail": detail, "field": "body"}, page, {})


async def receive_large_body(
    scope: Scope, receive: Receive, headers: Headers
) -> tempfile.SpooledTemporaryFile[bytes]:
    """The whole body, received with this request's place at the gate given up, then taken
    again (``GateTimeout`` when none comes in time); a JSON body is refused before then when
    it holds too many values (``TooManyValues``)."""
    place: Place | None = scope.get(GATE_PLACE)
    if place is not None:
        place.give_up()
    spool = await _spooled_body(receive)
    if _parsed_as_json(headers):
        try:
            _check_values(spool)
        except TooManyValues:
            spool.close()
            raise
    if place is not None and not await place.take():
        spool.close()
        raise GateTimeout()
    return spool
