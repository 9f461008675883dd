"""Request dependencies: who is calling (bearer token or session cookie), roles, CSRF."""

from __future__ import annotations

import hmac
import ipaddress
import secrets
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated

from anyio import to_thread
from fastapi import Depends, Request
from sqlalchemy.orm import Session

from app.clients import credential_worked
from app.config import get_settings
from app.db import get_readonly_session, get_session, get_sessionmaker, request_session
from app.models import Role, User, UserSession, role_at_least
from app.services.accounts import TokenUse, user_for_token
from app.services.sessions import user_for_session

UNSAFE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"


class NotAuthenticated(Exception):
    """No valid credentials: 401 for the JSON API, a redirect to the login page for HTML."""


class Forbidden(Exception):
    def __init__(self, detail: str = "not allowed for your role"):
        self.detail = detail


class CSRFError(Exception):
    pass


class PasswordChangeRequired(Exception):
    """A signed-in user with a generated password may do nothing but change it (or log out)."""


SESSION_KEY = "sid"  # the cookie's session secret (see services.sessions)
# request.state key: the principal the body-guarding middleware already resolved
CHECKED_PRINCIPAL = "checked_principal"


@dataclass(frozen=True)
class CurrentUser:
    """A plain copy of the signed-in user for templates: still readable after the session ends."""

    id: int
    username: str
    role: str
    held_out: bool
    must_change_password: bool

    @classmethod
    def of(cls, user: User) -> CurrentUser:
        return cls(user.id, user.username, user.role, user.held_out, user.must_change_password)


@dataclass
class Principal:
    user: User
    token: TokenUse | None  # None when authenticated by the session cookie
    browser_session: UserSession | None = None  # the cookie's session, when signed in by one

    @property
    def scopes(self) -> tuple[str, ...]:
        return self.token.scopes if self.token is not None else ()


def _bearer(header: str | None) -> str | None:
    if header is None:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise NotAuthenticated("malformed Authorization header; expected 'Bearer <token>'")
    return value.strip()


def resolve_principal(
    session: Session, authorization: str | None, session_secret: object
) -> Principal | None:
    """Who the credentials belong to: a bearer token wins over the session cookie. None for
    no (or an ended) session; ``NotAuthenticated`` for a bad token."""
    secret = _bearer(authorization)
    if secret is not None:
        found = user_for_token(session, secret)
        if found is None:
            raise NotAuthenticated("invalid or revoked token")
        return Principal(user=found[0], token=found[1])
    if session_secret is None:
        return None
    signed_in = user_for_session(session, session_secret)
    if signed_in is None:  # logged out, revoked, expired or deactivated
        return None
    return Principal(user=signed_in[0], token=None, browser_session=signed_in[1])


def _checked_principal(
    request: Request, session: Session, authorization: str | None, secret: object
) -> Principal | None:
    """The principal ``AuthenticateBeforeBody`` resolved for these very credentials earlier in
    this request (in this request's session, see ``app.db.request_session``); None when there
    is none."""
    checked = getattr(request.state, CHECKED_PRINCIPAL, None)
    if checked is None or checked[0] != authorization or checked[1] != secret:
        return None
    found: Principal = checked[2]
    if Session.object_session(found.user) is not session:
        return None  # another session's objects: look up again rather than mix sessions
    return found


async def optional_principal(
    request: Request, session: Session = Depends(get_session)
) -> Principal | None:
    """Who is calling. Async: a request with a body was authenticated before it was read (no
    second lookup, no thread); otherwise the lookup runs in a worker thread, and a request
    without credentials needs none."""
    authorization = request.headers.get("authorization")
    secret = request.session.get(SESSION_KEY)
    principal = _checked_principal(request, session, authorization, secret)
    if principal is None and (authorization is not None or secret is not None):
        principal = await to_thread.run_sync(resolve_principal, session, authorization, secret)
    return _identified(request, principal)


def _identified(request: Request, principal: Principal | None) -> Principal | None:
    """The request's bookkeeping once its caller is known: a cookie whose session ended is
    cleared; the user is kept for templates and the log."""
    if principal is None:
        if SESSION_KEY in request.session:
            request.session.clear()
        return None
    request.state.user = CurrentUser.of(principal.user)
    credential_worked(request.scope)  # its next requests are its own at the gate
    return principal


def client_address(request: Request) -> str:
    """The client's address: the TCP peer, or, when the peer is one of the trusted proxies
    (``PREFLOOP_TRUSTED_PROXIES``), the last address in X-Forwarded-For that is not one."""
    peer = request.client.host if request.client else "unknown"
    trusted = get_settings().trusted_proxy_networks
    if not trusted or not _is_in(peer, trusted):
        return peer
    hops = [
        hop.strip()
        for header in request.headers.getlist("x-forwarded-for")
        for hop in header.split(",")
        if hop.strip()
    ]
    for hop in reversed(hops):
        if not _is_in(hop, trusted):
            return hop[:64] if _is_ip(hop) else peer
    return peer


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _is_in(address: str, networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


def require_role(
    minimum: Role, *, scope: str | None = None, pending_password: bool = False
) -> Callable[..., Awaitable[Principal]]:
    """Dependency: the caller must have ``minimum`` role, or a token with ``scope``.

    A token with scopes is limited to endpoints that accept one of them. A browser session
    whose password must still be changed reaches only routes with ``pending_password``.
    """

    # async: it only reads the principal already loaded (no I/O), so it costs no thread hop
    async def dependency(principal: Principal | None = Depends(optional_principal)) -> Principal:
        return _allowed(principal, minimum, scope, pending_password)

    # read by the role-matrix test and the docs
    dependency.minimum_role = minimum  # type: ignore[attr-defined]
    dependency.scope = scope  # type: ignore[attr-defined]
    return dependency


def _allowed(
    principal: Principal | None, minimum: Role, scope: str | None, pending_password: bool
) -> Principal:
    """``principal`` when it may call a route of ``minimum`` role (or a token with ``scope``);
    otherwise the 401 or 403 that ``require_role`` documents."""
    if principal is None:
        raise NotAuthenticated("authentication required")
    if (
        principal.browser_session is not None
        and principal.user.must_change_password
        and not pending_password
    ):
        raise PasswordChangeRequired()
    if principal.scopes:
        if scope is None or scope not in principal.scopes:
            raise Forbidden("this token's scope does not allow this endpoint")
        return principal
    if not role_at_least(principal.user.role, minimum):
        raise Forbidden(f"requires the {minimum.value} role")
    return principal


@dataclass(frozen=True)
class Caller:
    """A request's credentials, not yet looked up: a sync route looks them up itself, first
    thing in its worker thread (``principal``), so the request makes one trip through the
    thread pool instead of two (the lookup's and the route's; each trip, a worker woken and the
    result handed back to the event loop, was 16% of a web process's CPU with 100 labelers,
    issue 14). The same checks and answers as ``require_role``'s.

    The route works in ``session()``, opened in its thread, rather than in ``SessionDep``: each
    dependency FastAPI solves costs a request tens of microseconds, one with ``yield`` more
    (issue 14)."""

    request: Request
    minimum: Role
    # the request's session when a middleware opened one (app.db.request_session): read in
    # the event loop, where the middleware set it
    shared: Session | None = None

    @contextmanager
    def session(self) -> Iterator[Session]:
        """The route's session, as ``get_session`` gives it: the request's own when a
        middleware opened one (it closes it), else a new one, closed here; rolled back when the
        route fails."""
        session = self.shared or get_sessionmaker()()
        try:
            yield session
        except BaseException:
            session.rollback()
            raise
        finally:
            if self.shared is None:
                session.close()

    def principal(self, session: Session) -> Principal:
        """Who is calling, in ``session`` (the route's), if they may: else the 401 or 403."""
        request = self.request
        authorization = request.headers.get("authorization")
        secret = request.session.get(SESSION_KEY)
        found = _checked_principal(request, session, authorization, secret)
        if found is None and (authorization is not None or secret is not None):
            found = resolve_principal(session, authorization, secret)
        return _allowed(_identified(request, found), self.minimum, None, False)

    def check(self) -> None:
        """``principal``'s 401 or 403 now, in a session of its own."""
        with self.session() as session:
            self.principal(session)


def caller(minimum: Role, *, takes_body: bool = False) -> Callable[..., Awaitable[Caller]]:
    """Dependency: the route's ``Caller``, to be looked up by the route (``Caller.principal``)
    before it does anything else; for sync routes on the hot path only, ``require_role``
    everywhere else: a route that forgets the call would serve anyone (the role-matrix test's
    anonymous request to every route with a role would then fail).

    ``takes_body``: FastAPI validates a route's body before the route runs. A request with a
    body was looked up before it was read (``AuthenticateBeforeBody``: ``shared`` is its
    session); one sent without a body is checked here, so that a stranger gets the 401 every
    route gives before the 422 about the missing body."""

    async def dependency(request: Request) -> Caller:
        found = Caller(request, minimum, request_session.get())
        if takes_body and found.shared is None:
            await to_thread.run_sync(found.check)
        return found

    dependency.minimum_role = minimum  # type: ignore[attr-defined]
    dependency.scope = None  # type: ignore[attr-defined]
    return dependency


any_user = require_role(Role.labeler)
# the password page itself: reachable before the generated password is changed
account_owner = require_role(Role.labeler, pending_password=True)
researcher = require_role(Role.researcher)
admin = require_role(Role.admin)


def csrf_token(request: Request) -> str:
    """The session's CSRF token, created on first use."""
    token = request.session.get("csrf")
    if not token:
        token = secrets.token_urlsafe(32)
        request.session["csrf"] = token
    return token


async def csrf_protect(request: Request) -> None:
    """App-wide: a state-changing request that relies on the cookie must carry the CSRF token.

    Requests with a bearer token carry no ambient credentials and are exempt.
    """
    if request.method not in UNSAFE_METHODS or "authorization" in request.headers:
        return
    if request.url.path.startswith("/api/") and SESSION_KEY not in request.session:
        return  # no cookie credentials: authentication answers 401 instead
    expected = request.session.get("csrf")
    sent = request.headers.get(CSRF_HEADER)
    if sent is None:
        content_type = request.headers.get("content-type", "")
        if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
            form = await request.form()
            value = form.get(CSRF_FIELD)
            sent = value if isinstance(value, str) else None
    if not expected or not sent or not hmac.compare_digest(expected, sent):
        raise CSRFError()


# the route signatures' dependencies, as the FastAPI template writes them
SessionDep = Annotated[Session, Depends(get_session)]
# long reads (statistics pages): on SQLite they do not hold the write lock
ReadSessionDep = Annotated[Session, Depends(get_readonly_session)]
LabelerDep = Annotated[Principal, Depends(any_user)]
LabelerCaller = Annotated[Caller, Depends(caller(Role.labeler))]
LabelerBodyCaller = Annotated[Caller, Depends(caller(Role.labeler, takes_body=True))]
ResearcherDep = Annotated[Principal, Depends(researcher)]
AdminDep = Annotated[Principal, Depends(admin)]
