"""A request with a body is authenticated before anything reads the body
(``AuthenticateBeforeBody``), in the session its route then works in."""

from __future__ import annotations

import re
from functools import partial

from sqlalchemy.orm import Session
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from app.db import (
    close_session,
    get_engine,
    get_sessionmaker,
    is_postgres,
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
from app.middleware.body import (
    PUBLIC_BODY_PATHS,
    ClientGone,
    TooManyValues,
    answer_body_timeout,
    answer_public_form_too_large,
    answer_too_many_values,
    has_body,
    is_small_body,
    receive_large_body,
    replay_spool,
)
from app.middleware.replies import wants_json

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
        if not has_body(headers):
            await self.app(scope, receive, send)
            return
        small = is_small_body(headers)
        if scope["path"] in PUBLIC_BODY_PATHS:
            # anyone may send these forms: only as small bodies, which arrived in full before
            # the gate (ReceiveSmallBody), never one that could trickle in holding a place
            if not small:
                await answer_public_form_too_large(scope, receive, send)
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
                            spool = await receive_large_body(scope, receive, headers)
                        except ClientGone:
                            return
                        except TimeoutError:
                            await answer_body_timeout(scope, receive, send)
                            return
                        except TooManyValues as exc:
                            await answer_too_many_values(scope, receive, send, exc.limit)
                            return
                        receive = replay_spool(spool, receive)
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
