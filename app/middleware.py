"""ASGI middleware at the edge: security headers, the request size limit, and authentication
before a request body is read.

They are plain ASGI callables (no ``BaseHTTPMiddleware``). Order, outermost first:
``SecurityHeaders`` -> ``RequestSizeLimit`` -> ``ReceiveSmallBody`` -> ``DatabaseBusy`` ->
sessions (Starlette's signed cookie) -> ``AuthenticateBeforeBody`` -> the app.

No request waits on its client while it holds a place at the database gate or a connection:
a body of up to ``SMALL_BODY_BYTES`` arrives in full before the request queues at the gate,
and a larger one after its sender is authenticated, with the request's place given up
meanwhile (``PREFLOOP_BODY_TIMEOUT_S`` bounds both; then 408). Otherwise a signed-in client
sending bodies a byte at a time held every place, and everyone else got 503s. Such a large
body, when it is JSON, has its values counted before anything parses it
(``PREFLOOP_MAX_JSON_VALUES``, ``app.json_values``; then 413). The gate's places go in
arrival order, but fairly between clients (``FairGate``): one client's flood waits behind
everyone else's requests.
"""

from __future__ import annotations

import asyncio
import logging
import re
import tempfile
import weakref
from collections import deque
from collections.abc import Mapping
from functools import partial

import anyio
from sqlalchemy.orm import Session
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app import json_values
from app.clients import client_of, credential_of
from app.config import get_settings
from app.db import (
    NO_DATABASE_AFTER_START,
    close_session,
    get_engine,
    get_sessionmaker,
    is_postgres,
    is_saturation,
    on_the_loop,
    request_session,
    runs_on_the_loop,
)
from app.deps import (
    CHECKED_PRINCIPAL,
    SESSION_KEY,
    NotAuthenticated,
    Principal,
    resolve_principal,
)

# no inline script anywhere (static/js only); inline style attributes are allowed (SVG charts,
# htmx's indicator style), images only from this origin (a Markdown image from elsewhere would
# be a tracking pixel on every labeler)
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}
logger = logging.getLogger(__name__)

# requests with a body that anyone may send (the login form carries no credentials yet)
PUBLIC_BODY_PATHS = frozenset({"/login", "/logout"})
# the routes whose bodies may be up to PREFLOOP_MAX_REQUEST_BYTES (a batch of prompts or
# outputs); every other body is limited to PREFLOOP_MAX_BODY_BYTES
BULK_BODY_PATHS = frozenset(
    {"/api/v1/prompts", "/api/v1/completions", "/api/v1/evaluations", "/admin/evaluations"}
)

# a labeler's submission (the JSON API's and the labeling page's): a small body whose route
# works in the database from start to end, so on SQLite too the caller's lookup leaves its
# transaction (and the write lock it holds there) open for the route (see _authenticated)
SUBMISSION_PATH = re.compile(r"/(?:api/v1/)?tasks/[0-9]+(?:/submission|/skip)?")
# a labeler's first submission through the JSON API, whose route looks its caller up itself
# (``app.deps.Caller``): on PostgreSQL, with a bearer token, this middleware leaves the lookup
# to it (see ``AuthenticateBeforeBody``)
API_SUBMISSION_PATH = re.compile(r"/api/v1/tasks/[0-9]+/submission")
# scope state: the request's caller is looked up by its route, not yet by this middleware
DEFERRED_LOOKUP = "prefloop_deferred_lookup"


def wants_json(path: str, headers: Headers) -> bool:
    return path.startswith("/api/") or "application/json" in headers.get("accept", "")


# as ASGI carries them: lower-case names, bytes
_RAW_SECURITY_HEADERS = [
    (name.lower().encode("latin-1"), value.encode("latin-1"))
    for name, value in SECURITY_HEADERS.items()
]


class SecurityHeaders:
    """Adds the headers above to every HTTP response (those already set are kept)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                # the raw list, not MutableHeaders' lookups and rewrites (~1% of a labeling
                # cycle's CPU, issue 14)
                headers = list(message.get("headers", ()))
                present = {name.lower() for name, _ in headers}
                headers.extend(h for h in _RAW_SECURITY_HEADERS if h[0] not in present)
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


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

        watched = _WatchedSend(send)
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


class _WatchedSend:
    """``send`` that remembers whether the response has started (after which an error can no
    longer be answered with a response of its own)."""

    def __init__(self, send: Send) -> None:
        self.send = send
        self.started = False

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.started = True
        await self.send(message)


class ClientStoppedReading(Exception):
    """A client took no part of its response for ``send_timeout_s``."""


class _TimedSend(_WatchedSend):
    """``_WatchedSend`` whose body messages must be taken by the client within
    ``send_timeout_s`` (a send waits only while the client does not read). The request's
    place at the gate is given up as the response starts when the route said it needs no
    database connection from then on (``NO_DATABASE_AFTER_START``)."""

    def __init__(self, send: Send, timeout: float, scope: Scope, place: _Place) -> None:
        super().__init__(send)
        self.timeout = timeout
        self.scope = scope
        self.place = place

    async def __call__(self, message: Message) -> None:
        if message["type"] != "http.response.body":
            if self.scope.get(NO_DATABASE_AFTER_START):
                self.place.give_up()
            await super().__call__(message)
            return
        try:
            # asyncio's own timeout: a third of anyio's fail_after's CPU, on every response
            async with asyncio.timeout(self.timeout):
                await self.send(message)
        except TimeoutError:
            raise ClientStoppedReading() from None


def _stopped_reading(exc: BaseException) -> bool:
    """``exc`` is ``ClientStoppedReading``, alone or in a group (a streamed response's)."""
    if isinstance(exc, BaseExceptionGroup):
        return all(_stopped_reading(e) for e in exc.exceptions)
    return isinstance(exc, ClientStoppedReading)


def _declared_length(headers: Headers) -> int | None:
    """The body's declared Content-Length: None without one, -1 when it is not a number."""
    declared = headers.get("content-length")
    if declared is None:
        return None
    try:
        return int(declared)
    except ValueError:
        return -1


def _has_body(headers: Headers) -> bool:
    size = _declared_length(headers)
    return size != 0 if size is not None else "transfer-encoding" in headers


# a body of at most this many bytes (declared) arrives with its headers or right after them
SMALL_BODY_BYTES = 64 * 1024


def _small_body(headers: Headers) -> bool:
    size = _declared_length(headers)
    return size is not None and 0 <= size <= SMALL_BODY_BYTES


class _ClientGone(Exception):
    """The client disconnected before its body arrived in full: nobody to answer."""


def _body_timeout(timeout: float) -> str:
    return (
        f"the request body did not arrive within {timeout:g} s (PREFLOOP_BODY_TIMEOUT_S); "
        "nothing was stored"
    )


async def _answer(
    scope: Scope,
    receive: Receive,
    send: Send,
    status: int,
    body: Mapping[str, object],
    page: str,
    headers: dict[str, str],
) -> None:
    """An answer of the edge's own: ``body`` as JSON under /api/ (or when JSON is asked for),
    else ``page``, a short HTML page."""
    response: Response
    if wants_json(scope["path"], Headers(scope=scope)):
        response = JSONResponse(body, status_code=status, headers=headers)
    else:
        response = HTMLResponse(page, status_code=status, headers=headers)
    await response(scope, receive, send)


async def _answer_body_timeout(scope: Scope, receive: Receive, send: Send) -> None:
    """408 Request Timeout, and the connection closed (its client is mid-body)."""
    detail = _body_timeout(get_settings().body_timeout_s)
    page = f"<!doctype html><title>Request timeout</title><p>{detail}.</p>"
    body = {"detail": detail, "field": "body"}
    await _answer(scope, receive, send, 408, body, page, {"Connection": "close"})


async def _next_piece(receive: Receive) -> tuple[bytes, bool]:
    """The next piece of the body and whether more follows."""
    message = await receive()
    if message["type"] == "http.disconnect":
        raise _ClientGone()
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
        except _ClientGone:
            return
        except TimeoutError:
            await _answer_body_timeout(scope, receive, send)
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


def _replay_spool(spool: tempfile.SpooledTemporaryFile[bytes], rest: Receive) -> Receive:
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


def _authenticated(
    session: Session,
    authorization: str | None,
    session_secret: object,
    small_body: bool,
    submission: bool,
) -> Principal | str:
    """The principal when the credentials are good, else why not (runs in a worker thread, or
    on the event loop: ``app.db.on_the_loop``).

    For a small body (it has arrived already) on PostgreSQL, or a labeler's submission
    (``SUBMISSION_PATH``) on SQLite in a worker thread, the lookup's transaction stays open for
    the route, which works in this session: one transaction per request, not two (a BEGIN and
    a COMMIT less per submission, issue 14). Otherwise the lookup commits, so that no
    transaction stays open while a body arrives: a large upload must not hold one of
    PgBouncer's server connections (transaction mode). On SQLite every transaction holds the write lock (``BEGIN
    IMMEDIATE``): kept only for a route that goes straight to its writes, never for one that
    may work a while outside the database first (a prompt's PII scan). On the event loop a
    submission's lookup commits too: a transaction kept open there across the loop's next
    steps would leave the other requests the connection in use (``WriterBusy``)."""
    try:
        principal = resolve_principal(session, authorization, session_secret)
    except NotAuthenticated as exc:
        session.rollback()
        return str(exc) or "authentication required"
    if principal is None:
        session.rollback()
        return "authentication required"
    if not (small_body and (submission or is_postgres(session))):
        session.commit()
    return principal


class AuthenticateBeforeBody:
    """A request with a body is authenticated before anything reads the body.

    FastAPI reads and parses a body before it runs a route's dependencies, so without this an
    anonymous client could make the server buffer and parse a large body before its 401. The
    route's own dependencies still decide who may do what; this only refuses strangers early.
    One exception, on the labeling hot path: a bearer token's submission of a small body
    (already received, at most ``SMALL_BODY_BYTES``) is looked up by its route, on PostgreSQL
    (``_route_looks_up``), and a stranger's 401 then still comes before any 422.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        if not _has_body(headers):
            await self.app(scope, receive, send)
            return
        small = _small_body(headers)
        if scope["path"] in PUBLIC_BODY_PATHS:
            # anyone may send these forms: only as small bodies, which arrived in full before
            # the gate (ReceiveSmallBody), never one that could trickle in holding a place
            if not small:
                await _public_form_too_large(scope, receive, send)
                return
            await self.app(scope, receive, send)
            return
        cookie_secret = scope.get("session", {}).get(SESSION_KEY)
        authorization = headers.get("authorization")
        if small and authorization is not None and _route_looks_up(scope):
            await _with_deferred_lookup(self.app, scope, receive, send)
            return
        problem: Principal | str = "authentication required"
        if authorization is not None or cookie_secret is not None:
            session = get_sessionmaker()()
            try:
                submission = (
                    small
                    and SUBMISSION_PATH.fullmatch(scope["path"]) is not None
                    and not runs_on_the_loop(get_engine())
                )
                problem = await on_the_loop(
                    partial(
                        _authenticated, session, authorization, cookie_secret, small, submission
                    )
                )
                if isinstance(problem, Principal):
                    # the route's dependencies take it from here, in the same session, instead
                    # of looking it up again
                    state = scope.setdefault("state", {})
                    state[CHECKED_PRINCIPAL] = (authorization, cookie_secret, problem)
                    spool = None
                    if not small:
                        # a large or chunked body may take a while: it arrives before the
                        # route runs, with the request's place at the gate given up meanwhile
                        # (the lookup committed: no connection is held either)
                        try:
                            spool = await _receive_large_body(scope, receive, headers)
                        except _ClientGone:
                            return
                        except TimeoutError:
                            await _answer_body_timeout(scope, receive, send)
                            return
                        except _TooManyValues as exc:
                            await _answer_too_many_values(scope, receive, send, exc.limit)
                            return
                        receive = _replay_spool(spool, receive)
                    try:
                        await _app_in_session(self.app, session, scope, receive, send)
                    finally:
                        if spool is not None:
                            spool.close()
                    return
            finally:
                await close_session(session)
        response: Response
        if wants_json(scope["path"], headers):
            response = JSONResponse(
                {"detail": problem},
                status_code=401,
                headers={"WWW-Authenticate": "Bearer", "Connection": "close"},
            )
        else:
            request = Request(scope)
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            response = RedirectResponse(f"/login?next={target}", status_code=303)
        await response(scope, receive, send)


def _route_looks_up(scope: Scope) -> bool:
    """Whether the route itself looks the caller up, in the same trip through the thread pool
    as its work: a bearer token's small submission through the API, on PostgreSQL (one trip
    less per submission: 6% less of the web process's CPU per cycle, docs/performance.md). On
    SQLite the lookup runs on the event loop anyway (``app.db.on_the_loop``), or keeps its
    transaction for the route."""
    if scope["method"] != "POST" or API_SUBMISSION_PATH.fullmatch(scope["path"]) is None:
        return False
    engine = get_engine()
    return engine.dialect.name == "postgresql" and not runs_on_the_loop(engine)


async def _with_deferred_lookup(app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
    """Run the app with the request's session shared (``app.db.request_session``) and the
    lookup left to the route. The route's first statement is the lookup (a stranger's 401);
    should the request fail before its route runs (a malformed body, an id in the path no row
    can have), the error's handler looks the caller up first (``deferred_lookup_failed``), so
    that a stranger still gets 401 before any 422, as on every other route."""
    scope.setdefault("state", {})[DEFERRED_LOOKUP] = True
    session = get_sessionmaker()()
    try:
        await _app_in_session(app, session, scope, receive, send)
    finally:
        await close_session(session)


async def _app_in_session(
    app: ASGIApp, session: Session, scope: Scope, receive: Receive, send: Send
) -> None:
    """Run the app with ``session`` as the request's own (``app.db.request_session``): the
    route and its dependencies work in it; the caller closes it."""
    shared = request_session.set(session)
    try:
        await app(scope, receive, send)
    finally:
        request_session.reset(shared)


def deferred_lookup_failed(request: Request) -> str | None:
    """For a request whose caller its route was to look up (``DEFERRED_LOOKUP``) but which
    failed before its route ran: why the caller is not authenticated (the 401's detail), or
    None when they are, or when the lookup was not deferred. Sync: it runs in the error
    handler's worker thread, with a session of its own."""
    if not getattr(request.state, DEFERRED_LOOKUP, False):
        return None
    session = get_sessionmaker()()
    try:
        problem = _authenticated(
            session,
            request.headers.get("authorization"),
            request.session.get(SESSION_KEY),
            small_body=False,
            submission=False,
        )
    finally:
        session.close()
    return problem if isinstance(problem, str) else None


async def _public_form_too_large(scope: Scope, receive: Receive, send: Send) -> None:
    detail = (
        f"a form sent to {scope['path']} is at most {SMALL_BODY_BYTES} bytes, with its "
        "Content-Length declared"
    )
    response = JSONResponse(
        {"detail": detail, "field": "body"}, status_code=413, headers={"Connection": "close"}
    )
    await response(scope, receive, send)


class _TooManyValues(Exception):
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
    """``_TooManyValues`` for a JSON body whose parse would make more values than allowed (the
    count is bytes operations: ~0.1 s for 32 MiB, its parse up to 3.5 s)."""
    limit = get_settings().max_json_values
    spool.seek(0)
    if not json_values.at_most(spool.read(), limit):
        raise _TooManyValues(limit)


async def _answer_too_many_values(scope: Scope, receive: Receive, send: Send, limit: int) -> None:
    detail = json_values.too_many_detail(limit)
    page = f"<!doctype html><title>Request too large</title><p>{detail}.</p>"
    await _answer(scope, receive, send, 413, {"detail": detail, "field": "body"}, page, {})


async def _receive_large_body(
    scope: Scope, receive: Receive, headers: Headers
) -> tempfile.SpooledTemporaryFile[bytes]:
    """The whole body, received with this request's place at the gate given up, then taken
    again (``GateTimeout`` when none comes in time); a JSON body is refused before then when
    it holds too many values (``_TooManyValues``)."""
    place: _Place | None = scope.get(GATE_PLACE)
    if place is not None:
        place.give_up()
    spool = await _spooled_body(receive)
    if _parsed_as_json(headers):
        try:
            _check_values(spool)
        except _TooManyValues:
            spool.close()
            raise
    if place is not None and not await place.take():
        spool.close()
        raise GateTimeout()
    return spool


SATURATED = "the database is busy; retry in a moment (nothing was stored by this request)"
# scope key: the request's place at DatabaseBusy's gate (a ``_Place``)
GATE_PLACE = "prefloop.gate_place"


class GateTimeout(Exception):
    """A request that gave its place up (while its body arrived) found none again in
    ``db_pool_timeout_s``: answered as a saturated database (503)."""


def _expire(future: asyncio.Future[bool]) -> None:
    """A waiter's time ran out: it leaves without a place (unless its turn came first)."""
    if not future.done():
        future.set_result(False)


class FairGate:
    """The places at the database gate of one event loop, handed out in arrival order, except
    that a client with more than ``share`` requests in at once waits behind every other
    client's. Before, one signed-in client sending many requests at once held the queue and
    everyone else waited behind them: while one labeler's token kept 1,000 requests in flight,
    another labeler's cycle took 5.3 s at the median (the pool's timeout, then 503s, with
    more); 210 ms after (docs/performance.md).

    A client is a credential that has worked in this process (a bearer token, a browser's
    cookies), else an address (``app.clients``); a request counts against its client from
    arrival to its end. With one client only (a load test on one token) the order is plain
    arrival order.

    Waiting behind the others is a priority, not a ban: while requests of both kinds wait, one
    place in ``BEYOND_SHARE_TURN`` goes to the longest-waiting request beyond its share. Else
    the first requests of many labelers behind one address (an office, a load test: their
    tokens not yet seen to work in this process, so all counted as the address's) waited
    while the others' requests kept coming, until the timeout's 503."""

    BEYOND_SHARE_TURN = 5

    def __init__(self, places: int, share: int) -> None:
        self.free = places
        self.share = share
        self.load: dict[int | str, int] = {}
        self.waiting = 0  # waiters not cancelled, in either queue
        self.within_share: deque[asyncio.Future[bool]] = deque()
        self.beyond_share: deque[asyncio.Future[bool]] = deque()
        # places handed within share while requests beyond share waited, since the last
        # place handed beyond share
        self.within_in_a_row = 0

    def arrive(self, client: int | str) -> bool:
        """Count a request of ``client``; whether it is within the client's share."""
        load = self.load.get(client, 0) + 1
        self.load[client] = load
        return load <= self.share

    def leave(self, client: int | str) -> None:
        load = self.load[client] - 1
        if load:
            self.load[client] = load
        else:
            del self.load[client]

    async def take(self, within_share: bool) -> bool:
        """A place: at once when one is free and nobody waits, else in turn, for up to
        ``db_pool_timeout_s`` (False when none came).

        A waiter is a bare asyncio future with a timer (``loop.call_later``): its turn sets it
        True, the timer False. anyio's ``Event`` and ``move_on_after`` cost five times as much
        per wait (a cancel scope entered and left), and at 100 labelers most requests wait
        here."""
        if self.free and not self.waiting:
            self.free -= 1
            return True
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[bool] = loop.create_future()
        (self.within_share if within_share else self.beyond_share).append(waiter)
        self.waiting += 1
        timer = loop.call_later(get_settings().db_pool_timeout_s, _expire, waiter)
        taken = False
        try:
            taken = await waiter
        finally:
            timer.cancel()
            granted = waiter.done() and not waiter.cancelled() and waiter.result()
            if not granted:  # timed out or cancelled: its turn never came
                if not waiter.done():
                    waiter.cancel()
                self.waiting -= 1
            elif not taken:  # cancelled just as its turn came: pass the place on
                self.release()
        return taken

    def release(self) -> None:
        """Give a place back: to the first waiter within its client's share, else to the first
        beyond it (first anyway when its turn has come, see ``BEYOND_SHARE_TURN``), else to
        the free ones."""
        queues = (self.within_share, self.beyond_share)
        if self.within_in_a_row >= self.BEYOND_SHARE_TURN - 1:
            queues = (self.beyond_share, self.within_share)
        for queue in queues:
            while queue:
                waiter = queue.popleft()
                if waiter.done():  # timed out or cancelled
                    continue
                waiter.set_result(True)
                self.waiting -= 1
                if queue is self.beyond_share:
                    self.within_in_a_row = 0
                elif self.beyond_share:
                    self.within_in_a_row += 1
                return
        self.free += 1


class _Place:
    """A request's place at the gate, which it gives up while it waits on its client."""

    def __init__(self, gate: FairGate, within_share: bool) -> None:
        self.gate = gate
        self.within_share = within_share
        self.held = False

    async def take(self) -> bool:
        """Wait for a place in turn, up to ``db_pool_timeout_s``."""
        self.held = await self.gate.take(self.within_share)
        return self.held

    def give_up(self) -> None:
        if self.held:
            self.held = False
            self.gate.release()


class DatabaseBusy:
    """A saturated database (no connection in ``db_pool_timeout_s``, PostgreSQL's "too many
    clients") answers 503 with ``Retry-After``, never 500: JSON under /api/, a plain page
    otherwise. The request's transaction was rolled back, so nothing half-done is stored.

    At most as many requests as the connection pool holds (``db_pool_size`` +
    ``db_max_overflow``) run at once in this process; the others wait their turn here, first
    come first served between clients (``FairGate``), for up to ``db_pool_timeout_s`` (then
    the same 503). Without this gate the waiting happened in the pool, which is not fair: a
    newcomer takes a connection another thread has waited seconds for, and a request that
    holds a connection can wait behind them for a thread to run its route. Under 100 labelers
    the p99 was the pool's timeout."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        # one gate per event loop (a server has one; the test client makes one per call)
        self._gates: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, FairGate] = (
            weakref.WeakKeyDictionary()
        )

    def _gate(self) -> FairGate:
        loop = asyncio.get_running_loop()
        gate = self._gates.get(loop)
        if gate is None:
            settings = get_settings()
            places = settings.db_pool_size + settings.db_max_overflow
            gate = FairGate(places, settings.fair_share_requests)
            self._gates[loop] = gate
        return gate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith("/static/"):
            await self.app(scope, receive, send)
            return
        gate = self._gate()
        client = client_of(scope)
        place = _Place(gate, gate.arrive(client))
        try:
            await self._in_turn(place, scope, receive, send)
        finally:
            gate.leave(client)

    async def _in_turn(self, place: _Place, scope: Scope, receive: Receive, send: Send) -> None:
        if not await place.take():
            await self._busy(scope, receive, send)
            return
        scope[GATE_PLACE] = place
        watched = _TimedSend(send, get_settings().send_timeout_s, scope, place)
        try:
            await self.app(scope, receive, watched)
        except Exception as exc:
            if _stopped_reading(exc):
                # the response is cut short: returning unfinished makes the server close the
                # connection, and the place is free again
                logger.warning(
                    "%s %s: the client took nothing for %g s (PREFLOOP_SEND_TIMEOUT_S); "
                    "connection closed",
                    scope.get("method"),
                    scope["path"],
                    watched.timeout,
                )
                return
            if watched.started or not (isinstance(exc, GateTimeout) or is_saturation(exc)):
                raise
            await self._busy(scope, receive, send)
        finally:
            place.give_up()

    async def _busy(self, scope: Scope, receive: Receive, send: Send) -> None:
        page = (
            "<!doctype html><title>Busy</title><p>The server is busy. Please retry in"
            " a moment; nothing was saved by this request.</p>"
        )
        headers = {"Retry-After": str(get_settings().db_retry_after_s)}
        await _answer(scope, receive, send, 503, {"detail": SATURATED}, page, headers)
