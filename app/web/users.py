"""Admin pages for users and tokens (``/admin/users``): the browser twin of ``prefloop users``
and ``prefloop tokens``, over the same service functions. Admins only.

Secrets (a one-time password, a new token) are shown once, in the answer to the POST that made
them, with ``Cache-Control: no-store``; they are never put in a cookie or a redirect.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session

from app.deps import SessionDep, admin
from app.models import ApiToken, Role, User
from app.schemas import DbId
from app.services import NotFound, ServiceError, accounts
from app.web.templating import render

router = APIRouter(include_in_schema=False, dependencies=[Depends(admin)])
ROLES = [role.value for role in Role]


def _user(session: Session, user_id: int) -> User:
    user = session.get(User, user_id)
    if user is None:
        raise NotFound(f"no user {user_id}", field="user_id")
    return user


def _list_context(session: Session) -> dict[str, Any]:
    activity: dict[str, list[accounts.SessionInfo]] = {}
    for info in accounts.session_activity(session):
        activity.setdefault(info.username, []).append(info)
    return {"users": accounts.list_users(session), "activity": activity, "roles": ROLES}


def _no_store(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    return response


@router.get("/admin/users")
def users_page(
    request: Request,
    session: SessionDep,
) -> Response:
    return render(request, "admin/users.html", _list_context(session))


@router.post("/admin/users")
def create_user(
    request: Request,
    session: SessionDep,
    username: str = Form(""),
    role: str = Form("labeler"),
) -> Response:
    """Create an account with a one-time password, shown once on the page that answers."""
    try:
        user, password = accounts.create_user_with_password(session, username.strip(), role)
    except ServiceError as exc:
        session.rollback()
        ctx = _list_context(session) | {
            "error": exc.detail,
            "form": {"username": username, "role": role},
        }
        return render(request, "admin/users.html", ctx, status_code=exc.status_code)
    session.commit()
    ctx = _list_context(session) | {"secret": {"user": user.username, "password": password}}
    return _no_store(render(request, "admin/users.html", ctx, status_code=201))


def _detail_context(session: Session, user: User) -> dict[str, Any]:
    return {
        "user": user,
        "roles": ROLES,
        "tokens": accounts.list_tokens(session, user.username),
        "sessions": accounts.session_activity(session, user.username),
    }


@router.get("/admin/users/{user_id}")
def user_page(
    request: Request,
    session: SessionDep,
    user_id: DbId,
) -> Response:
    return render(request, "admin/user.html", _detail_context(session, _user(session, user_id)))


def _after_change(
    request: Request, session: Session, user_id: int, change: Any, **secret: str
) -> Response:
    """Run one account change; back to the user's page, or the page with the error inline."""
    user = _user(session, user_id)
    try:
        result = change(user)
    except ServiceError as exc:
        session.rollback()
        ctx = _detail_context(session, _user(session, user_id)) | {"error": exc.detail}
        return render(request, "admin/user.html", ctx, status_code=exc.status_code)
    session.commit()
    if isinstance(result, dict):  # a secret to show once
        ctx = _detail_context(session, _user(session, user_id)) | {"secret": result}
        return _no_store(render(request, "admin/user.html", ctx))
    return RedirectResponse(f"/admin/users/{user_id}", status_code=303)


@router.post("/admin/users/{user_id}/role")
def change_role(
    request: Request,
    session: SessionDep,
    user_id: DbId,
    role: str = Form(""),
) -> Response:
    return _after_change(
        request, session, user_id, lambda u: accounts.set_role(session, u.username, role)
    )


@router.post("/admin/users/{user_id}/active")
def change_active(
    request: Request,
    session: SessionDep,
    user_id: DbId,
    active: str = Form(""),
) -> Response:
    """``active=on`` reactivates, anything else deactivates (sessions end, tokens refused)."""
    return _after_change(
        request,
        session,
        user_id,
        lambda u: accounts.set_active(session, u.username, active == "on"),
    )


@router.post("/admin/users/{user_id}/held-out")
def change_held_out(
    request: Request,
    session: SessionDep,
    user_id: DbId,
    held_out: str = Form(""),
) -> Response:
    return _after_change(
        request,
        session,
        user_id,
        lambda u: accounts.set_held_out(session, u.username, held_out == "on"),
    )


@router.post("/admin/users/{user_id}/password")
def reset_password(
    request: Request,
    session: SessionDep,
    user_id: DbId,
) -> Response:
    """A one-time password, shown once; the user's sessions end."""

    def change(user: User) -> dict[str, str]:
        _, password = accounts.reset_password(session, user.username)
        return {"kind": "password", "value": password}

    return _after_change(request, session, user_id, change)


@router.post("/admin/users/{user_id}/sessions/end")
def end_sessions(
    request: Request,
    session: SessionDep,
    user_id: DbId,
) -> Response:
    return _after_change(
        request, session, user_id, lambda u: accounts.end_sessions(session, u.username)
    )


@router.post("/admin/users/{user_id}/tokens")
def create_token(
    request: Request,
    session: SessionDep,
    user_id: DbId,
    name: str = Form(""),
    scope: str = Form(""),
) -> Response:
    """A new API token, shown once (``scope``: empty for the owner's role, or ``ingest``)."""

    def change(user: User) -> dict[str, str]:
        scopes = [scope] if scope.strip() else None
        _, secret = accounts.create_token(session, user.username, name.strip()[:100], scopes)
        return {"kind": "token", "value": secret}

    return _after_change(request, session, user_id, change)


@router.post("/admin/users/{user_id}/tokens/{token_id}/revoke")
def revoke_token(
    request: Request,
    session: SessionDep,
    user_id: DbId,
    token_id: DbId,
) -> Response:
    """Revoke one of this user's tokens (a token of another user is a 404)."""

    def change(user: User) -> ApiToken:
        return accounts.revoke_token(session, token_id, owner=user)

    return _after_change(request, session, user_id, change)
