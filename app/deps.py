"""Request dependencies: who is calling (bearer token or session cookie), roles, CSRF."""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from app.db import get_readonly_session, get_session
from app.models import ApiToken, Role, User, role_at_least
from app.services.accounts import user_for_token

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
    token: ApiToken | None  # None when authenticated by the session cookie

    @property
    def scopes(self) -> list[str]:
        return self.token.scopes if self.token is not None else []


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise NotAuthenticated("malformed Authorization header; expected 'Bearer <token>'")
    return value.strip()


def optional_principal(
    request: Request, session: Session = Depends(get_session)
) -> Principal | None:
    secret = _bearer(request)
    if secret is not None:
        found = user_for_token(session, secret)
        if found is None:
            raise NotAuthenticated("invalid or revoked token")
        request.state.user = CurrentUser.of(found[0])
        return Principal(user=found[0], token=found[1])
    user_id = request.session.get("user_id")
    if user_id is None:
        return None
    user = session.get(User, user_id)
    if user is None or not user.is_active:
        request.session.clear()
        return None
    request.state.user = CurrentUser.of(user)
    return Principal(user=user, token=None)


def require_role(minimum: Role, *, scope: str | None = None) -> Callable[..., Principal]:
    """Dependency: the caller must have ``minimum`` role, or a token with ``scope``.

    A token with scopes is limited to endpoints that accept one of them.
    """

    def dependency(principal: Principal | None = Depends(optional_principal)) -> Principal:
        if principal is None:
            raise NotAuthenticated("authentication required")
        if principal.scopes:
            if scope is None or scope not in principal.scopes:
                raise Forbidden("this token's scope does not allow this endpoint")
            return principal
        if not role_at_least(principal.user.role, minimum):
            raise Forbidden(f"requires the {minimum.value} role")
        return principal

    # read by the role-matrix test and the docs
    dependency.minimum_role = minimum  # type: ignore[attr-defined]
    dependency.scope = scope  # type: ignore[attr-defined]
    return dependency


any_user = require_role(Role.labeler)
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
    if request.url.path.startswith("/api/") and "user_id" not in request.session:
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
ResearcherDep = Annotated[Principal, Depends(researcher)]
AdminDep = Annotated[Principal, Depends(admin)]
