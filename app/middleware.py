"""ASGI middleware at the edge: security headers, the request size limit, and authentication
before a request body is read.

They are plain ASGI callables (no ``BaseHTTPMiddleware``), so nothing here buffers a body.
Order, outermost first: ``SecurityHeaders`` -> ``DatabaseBusy`` -> ``RequestSizeLimit`` -> sessions (Starlette's
signed cookie) -> ``AuthenticateBeforeBody`` -> the app.
"""

from __future__ import annotations

import asyncio
import weakref

import anyio
from anyio import to_thread
from sqlalchemy.orm import Session
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.config import get_settings
from app.db import close_session, get_sessionmaker, is_postgres, is_saturation, request_session
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
# requests with a body that anyone may send (the login form carries no credentials yet)
PUBLIC_BODY_PATHS = frozenset({"/login", "/logout"})


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

    def __init__(self, limit: int) -> None:
        super().__init__(status_code=413, detail=_too_large(None, limit))


def _too_large(size: int | None, limit: int) -> str:
    what = f"request body is {size} bytes" if size is not None else "request body is too large"
    return f"{what}; the limit is {limit} bytes (PREFLOOP_MAX_REQUEST_BYTES)"


class RequestSizeLimit:
    """413 for a declared Content-Length over the limit, before the app or a read runs; a body
    without a length (chunked) is counted as it arrives and cut off at the limit."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        size = _declared_length(Headers(scope=scope))
        if size is not None and (size < 0 or size > self.max_bytes):
            detail = (
                "Content-Length is not a number" if size < 0 else _too_large(size, self.max_bytes)
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
                if received > self.max_bytes:
                    raise RequestTooLarge(self.max_bytes)
            return message

        watched = _WatchedSend(send)
        try:
            await self.app(scope, counted_receive, watched)
        except RequestTooLarge:
            if watched.started:
                raise
            response = JSONResponse(
                {"detail": _too_large(None, self.max_bytes), "field": "body"},
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


def _authenticated(
    session: Session, authorization: str | None, session_secret: object, small_body: bool
) -> Principal | str:
    """The principal when the credentials are good, else why not (runs in a worker thread).

    For a small body on PostgreSQL (a labeler's submission), the lookup's transaction stays
    open for the route, which works in this session: one transaction per request, not two (a
    COMMIT and a BEGIN less per submission, issue 14). Otherwise the lookup commits, so that
    no transaction stays open while a body arrives: a large upload must not hold one of
    PgBouncer's server connections (transaction mode), and on SQLite every transaction holds
    the write lock (``BEGIN IMMEDIATE``)."""
    try:
        principal = resolve_principal(session, authorization, session_secret)
    except NotAuthenticated as exc:
        session.rollback()
        return str(exc) or "authentication required"
    if principal is None:
        session.rollback()
        return "authentication required"
    if not (small_body and is_postgres(session)):
        session.commit()
    return principal


class AuthenticateBeforeBody:
    """A request with a body is authenticated before anything reads the body.

    FastAPI reads and parses a body before it runs a route's dependencies, so without this an
    anonymous client could make the server buffer and parse a large body before its 401. The
    route's own dependencies still decide who may do what; this only refuses strangers early.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in PUBLIC_BODY_PATHS:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        if not _has_body(headers):
            await self.app(scope, receive, send)
            return
        cookie_secret = scope.get("session", {}).get(SESSION_KEY)
        authorization = headers.get("authorization")
        problem: Principal | str = "authentication required"
        if authorization is not None or cookie_secret is not None:
            session = get_sessionmaker()()
            try:
                problem = await to_thread.run_sync(
                    _authenticated, session, authorization, cookie_secret, _small_body(headers)
                )
                if isinstance(problem, Principal):
                    # the route's dependencies take it from here, in the same session, instead
                    # of looking it up again
                    state = scope.setdefault("state", {})
                    state[CHECKED_PRINCIPAL] = (authorization, cookie_secret, problem)
                    shared = request_session.set(session)
                    try:
                        await self.app(scope, receive, send)
                    finally:
                        request_session.reset(shared)
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


SATURATED = "the database is busy; retry in a moment (nothing was stored by this request)"


class DatabaseBusy:
    """A saturated database (no connection in ``db_pool_timeout_s``, PostgreSQL's "too many
    clients") answers 503 with ``Retry-After``, never 500: JSON under /api/, a plain page
    otherwise. The request's transaction was rolled back, so nothing half-done is stored.

    At most as many requests as the connection pool holds (``db_pool_size`` +
    ``db_max_overflow``) run at once in this process; the others wait their turn here, first
    come first served, for up to ``db_pool_timeout_s`` (then the same 503). Without this gate
    the waiting happened in the pool, which is not fair: a newcomer takes a connection another
    thread has waited seconds for, and a request that holds a connection can wait behind them
    for a thread to run its route. Under 100 labelers the p99 was the pool's timeout."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        # one gate per event loop (a server has one; the test client makes one per call)
        self._gates: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, anyio.Semaphore] = (
            weakref.WeakKeyDictionary()
        )

    def _gate(self) -> anyio.Semaphore:
        loop = asyncio.get_running_loop()
        gate = self._gates.get(loop)
        if gate is None:
            settings = get_settings()
            gate = anyio.Semaphore(settings.db_pool_size + settings.db_max_overflow)
            self._gates[loop] = gate
        return gate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith("/static/"):
            await self.app(scope, receive, send)
            return
        gate = self._gate()
        admitted = False
        try:
            # a free place is taken without a cancel scope or a trip through the event loop;
            # none is free only while others wait, since a release hands its place to the first
            # waiter: taking it here never overtakes them
            gate.acquire_nowait()
            admitted = True
        except anyio.WouldBlock:
            with anyio.move_on_after(get_settings().db_pool_timeout_s):
                await gate.acquire()
                admitted = True
        if not admitted:
            await self._busy(scope, receive, send)
            return
        watched = _WatchedSend(send)
        try:
            await self.app(scope, receive, watched)
        except Exception as exc:
            if watched.started or not is_saturation(exc):
                raise
            await self._busy(scope, receive, send)
        finally:
            gate.release()

    async def _busy(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = {"Retry-After": str(get_settings().db_retry_after_s)}
        response: Response
        if wants_json(scope["path"], Headers(scope=scope)):
            response = JSONResponse({"detail": SATURATED}, status_code=503, headers=headers)
        else:
            response = HTMLResponse(
                "<!doctype html><title>Busy</title><p>The server is busy. Please retry in"
                " a moment; nothing was saved by this request.</p>",
                status_code=503,
                headers=headers,
            )
        await response(scope, receive, send)
