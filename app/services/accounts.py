"""Accounts: users, passwords (Argon2), API tokens and login throttling."""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import timedelta

from pwdlib import PasswordHash
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.config import get_settings
from app.db import utcnow
from app.models import ApiToken, LabelerStatus, LoginAttempt, Role, User
from app.services import Conflict, Invalid, NotFound, ServiceError

_hasher = PasswordHash.recommended()  # Argon2id
USERNAME_RE = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
TOKEN_PREFIX = "pfl_"
TOKEN_SCOPES = {"ingest"}
# a hash to verify against when the user does not exist, so timing does not reveal usernames
_DUMMY_HASH = _hasher.hash("not-a-real-password")


class LoginThrottled(ServiceError):
    status_code = 429


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password: str, password_hash: str) -> bool:
    return _hasher.verify(password, password_hash)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def validate_new_password(password: str) -> None:
    if not password or not password.strip():
        raise Invalid("password must not be empty", field="password")
    if len(password) < 8:
        raise Invalid("password must be at least 8 characters", field="password")


def parse_role(role: str) -> Role:
    try:
        return Role(role)
    except ValueError:
        names = ", ".join(r.value for r in Role)
        raise Invalid(f"unknown role {role!r}; choose one of {names}", field="role") from None


def create_user(
    session: Session, username: str, password: str, role: str, *, must_change_password: bool = False
) -> User:
    if not USERNAME_RE.match(username or ""):
        raise Invalid("username must be 1-64 letters, digits or . _ @ -", field="username")
    parsed = parse_role(role)
    validate_new_password(password)
    if session.scalar(select(User.id).where(User.username == username)) is not None:
        raise Conflict(f"user {username!r} already exists", field="username")
    user = User(
        username=username,
        password_hash=hash_password(password),
        role=parsed.value,
        must_change_password=must_change_password,
        labeler_status=new_labeler_status(parsed),
    )
    session.add(user)
    try:
        session.flush()
    except IntegrityError:  # created concurrently
        session.rollback()
        raise Conflict(f"user {username!r} already exists", field="username") from None
    return user


def new_labeler_status(role: Role) -> str:
    """Where a new account starts: with ``PREFLOOP_SCREENING`` on, a new labeler is in
    screening (only the screening set until a researcher decides); everyone else is approved."""
    if role == Role.labeler and get_settings().screening:
        return LabelerStatus.screening.value
    return LabelerStatus.approved.value


def get_user(session: Session, username: str) -> User:
    user = session.scalar(select(User).where(User.username == username))
    if user is None:
        raise NotFound(f"no user {username!r}", field="username")
    return user


def set_held_out(session: Session, username: str, held_out: bool) -> User:
    user = get_user(session, username)
    user.held_out = held_out
    return user


def change_password(session: Session, user: User, current: str, new: str) -> None:
    if not verify_password(current, user.password_hash):
        raise Invalid("current password is wrong", field="current_password")
    validate_new_password(new)
    user.password_hash = hash_password(new)
    user.must_change_password = False


def ensure_first_admin(session: Session) -> str | None:
    """Create an ``admin`` account when there is none; returns its one-time password."""
    if session.scalar(select(func.count()).select_from(User).where(User.role == Role.admin)):
        return None
    password = secrets.token_urlsafe(12)
    username = "admin"
    if session.scalar(select(User.id).where(User.username == username)) is not None:
        username = f"admin-{secrets.token_hex(3)}"
    create_user(session, username, password, Role.admin, must_change_password=True)
    return f"{username}:{password}"


# login throttling ---------------------------------------------------------------------------


def _recent_failures(session: Session, username: str, ip: str) -> tuple[int, int]:
    settings = get_settings()
    since = utcnow() - timedelta(seconds=settings.login_window_s)
    by_user = session.scalar(
        select(func.count())
        .select_from(LoginAttempt)
        .where(LoginAttempt.username == username, LoginAttempt.at >= since)
    )
    by_ip = session.scalar(
        select(func.count())
        .select_from(LoginAttempt)
        .where(LoginAttempt.ip == ip, LoginAttempt.at >= since)
    )
    return int(by_user or 0), int(by_ip or 0)


def authenticate(session: Session, username: str, password: str, ip: str) -> User:
    """Check a login; throttles an account or an IP after too many recent failures."""
    settings = get_settings()
    # PostgreSQL text cannot hold NUL; no username has one, so such a login just fails
    username = username.replace("\x00", "\ufffd")
    by_user, by_ip = _recent_failures(session, username, ip)
    # the IP limit is wider: several people may share one address
    if by_user >= settings.login_max_failures or by_ip >= 4 * settings.login_max_failures:
        raise LoginThrottled(
            f"too many failed logins; try again in {settings.login_window_s // 60 or 1} minutes"
        )
    user = session.scalar(select(User).where(User.username == username))
    ok = verify_password(password, user.password_hash if user else _DUMMY_HASH)
    if not ok or user is None or not user.is_active:
        session.add(LoginAttempt(username=username[:64], ip=ip[:64]))
        session.commit()
        raise ServiceError("wrong username or password", status_code=401)
    # a success clears this account's failures
    session.execute(delete(LoginAttempt).where(LoginAttempt.username == username))
    user.last_login_at = utcnow()
    session.commit()
    return user


# API tokens ---------------------------------------------------------------------------------


def create_token(
    session: Session, username: str, name: str = "", scopes: list[str] | None = None
) -> tuple[ApiToken, str]:
    """A new token for ``username``; the secret is returned once and only its hash kept."""
    user = get_user(session, username)
    scopes = sorted(set(scopes or []))
    unknown = set(scopes) - TOKEN_SCOPES
    if unknown:
        raise Invalid(f"unknown scope(s): {', '.join(sorted(unknown))}", field="scope")
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(
        user_id=user.id,
        name=name,
        token_hash=hash_token(secret),
        prefix=secret[: len(TOKEN_PREFIX) + 6],
        scopes=scopes,
    )
    session.add(token)
    session.flush()
    return token, secret


def revoke_token(session: Session, token_id: int, owner: User | None = None) -> ApiToken:
    token = session.get(ApiToken, token_id)
    if token is None or (owner is not None and token.user_id != owner.id):
        raise NotFound(f"no token {token_id}")
    if token.revoked_at is None:
        token.revoked_at = utcnow()
    return token


def user_for_token(session: Session, secret: str) -> tuple[User, ApiToken] | None:
    """The active user and token behind a bearer secret, or None; records last use."""
    if not secret.startswith(TOKEN_PREFIX) or len(secret) > 200:
        return None
    token = session.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(secret)))
    if token is None or token.revoked_at is not None or not token.user.is_active:
        return None
    now = utcnow()
    # write at most once a minute: every request touching the row would serialise on it
    if token.last_used_at is None or now - token.last_used_at > timedelta(minutes=1):
        token.last_used_at = now
        session.commit()
    return token.user, token
