"""Login, logout and password change pages."""

from __future__ import annotations

from urllib.parse import urlparse

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session

from app.db import get_session
from app.deps import SESSION_KEY, Principal, account_owner, client_address, optional_principal
from app.models import Role, role_at_least
from app.services import ServiceError
from app.services.accounts import authenticate, change_password
from app.services.login_throttle import LoginThrottled
from app.services.sessions import end_session, start_session
from app.web.templating import render

router = APIRouter(include_in_schema=False)


def _safe_next(target: str | None) -> str | None:
    """Only same-site relative paths: never redirect a user off the site after login."""
    if not target:
        return None
    parsed = urlparse(target)
    if parsed.scheme or parsed.netloc or not target.startswith("/") or target.startswith("//"):
        return None
    return target


def home_for(role: str) -> str:
    return "/admin" if role_at_least(role, Role.researcher) else "/labeler"


@router.get("/")
def index(principal: Principal | None = Depends(optional_principal)) -> RedirectResponse:
    if principal is None:
        return RedirectResponse("/login", status_code=303)
    return RedirectResponse(home_for(principal.user.role), status_code=303)


@router.get("/login")
def login_page(request: Request, next: str | None = None) -> Response:
    return render(request, "auth/login.html", {"next": _safe_next(next), "username": ""})


@router.post("/login")
def login(
    request: Request,
    username: str = Form(""),
    password: str = Form(""),
    next: str | None = Form(None),
    session: Session = Depends(get_session),
) -> Response:
    ip = client_address(request)
    try:
        user = authenticate(session, username.strip(), password, ip)
    except ServiceError as exc:
        ctx = {"error": exc.detail, "username": username, "next": _safe_next(next)}
        response = render(request, "auth/login.html", ctx, status_code=exc.status_code)
        if isinstance(exc, LoginThrottled):
            response.headers["Retry-After"] = str(exc.retry_after_s)
        return response
    secret = start_session(session, user, ip=ip, user_agent=request.headers.get("user-agent", ""))
    session.commit()
    # a fresh cookie on login (no fixation), with a new CSRF token
    request.session.clear()
    request.session[SESSION_KEY] = secret
    if user.must_change_password:
        return RedirectResponse("/account/password", status_code=303)
    return RedirectResponse(_safe_next(next) or home_for(user.role), status_code=303)


@router.post("/logout")
def logout(request: Request, session: Session = Depends(get_session)) -> RedirectResponse:
    """End this session everywhere it was copied, and the user's other sessions."""
    end_session(session, request.session.get(SESSION_KEY))
    session.commit()
    request.session.clear()
    return RedirectResponse("/login", status_code=303)


@router.get("/account/password")
def password_page(request: Request, principal: Principal = Depends(account_owner)) -> Response:
    return render(request, "auth/password.html", {})


@router.post("/account/password")
def password_change(
    request: Request,
    current_password: str = Form(""),
    new_password: str = Form(""),
    principal: Principal = Depends(account_owner),
    session: Session = Depends(get_session),
) -> Response:
    user = principal.user
    keep = principal.browser_session.id if principal.browser_session else None
    try:
        change_password(session, user, current_password, new_password, keep_session=keep)
    except ServiceError as exc:
        return render(request, "auth/password.html", {"error": exc.detail}, status_code=422)
    session.commit()
    return RedirectResponse(home_for(user.role), status_code=303)
