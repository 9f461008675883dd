"""Accounts: users and their administration, passwords (Argon2), logins and API tokens.

The CLI (``prefloop users ...``, ``prefloop tokens ...``) and the admin page ``/admin/users``
call the same functions here. Changes that take rights away end the user's sessions
(``services.sessions``); the last active admin can be neither demoted nor deactivated.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from pwdlib import PasswordHash
from sqlalchemy import (
    Integer,
    Select,
    String,
    Update,
    bindparam,
    func,
    literal_column,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from app.config import get_settings
from app.db import UTCDateTime, attached, column_values, is_postgres, mapped_columns, utcnow
from app.models import ApiToken, LabelerStatus, Role, User
from app.services import Conflict, Invalid, NotFound, ServiceError, token_memory
from app.services.login_throttle import release_attempt, reserve_attempt
from app.services.sessions import end_user_sessions, live_sessions

_hasher = PasswordHash.recommended()  # Argon2id
USERNAME_RE = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
TOKEN_PREFIX = "pfl_"
TOKEN_SCOPES = {"ingest"}
# a hash to verify against when the user does not exist, so timing does not reveal usernames
_DUMMY_HASH = _hasher.hash("not-a-real-password")
# a token's last use is written when a request finds it older than this
TOKEN_USE_WRITTEN_EVERY = timedelta(minutes=1)


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


def change_password(
    session: Session, user: User, current: str, new: str, *, keep_session: int | None = None
) -> None:
    """The user's own change; ends their other sessions (all but ``keep_session``)."""
    if not verify_password(current, user.password_hash):
        raise Invalid("current password is wrong", field="current_password")
    validate_new_password(new)
    if verify_password(new, user.password_hash):
        raise Invalid("the new password must differ from the current one", field="new_password")
    user.password_hash = hash_password(new)
    user.must_change_password = False
    end_user_sessions(session, user.id, keep=keep_session)


def ensure_first_admin(session: Session) -> str | None:
    """Create an ``admin`` account when there is none; returns its one-time password."""
    if session.scalar(select(func.count()).select_from(User).where(User.role == Role.admin)):
        return None
    password = one_time_password()
    username = "admin"
    if session.scalar(select(User.id).where(User.username == username)) is not None:
        username = f"admin-{secrets.token_hex(3)}"
    create_user(session, username, password, Role.admin, must_change_password=True)
    return f"{username}:{password}"


# administration -----------------------------------------------------------------------------


def one_time_password() -> str:
    return secrets.token_urlsafe(12)


def _active_admins(session: Session) -> int:
    return int(
        session.scalar(
            select(func.count())
            .select_from(User)
            .where(User.role == Role.admin.value, User.is_active.is_(True))
        )
        or 0
    )


def _keep_an_admin(session: Session, user: User, action: str) -> None:
    if user.role == Role.admin.value and user.is_active and _active_admins(session) <= 1:
        raise Conflict(f"cannot {action} the last active admin", field="username")


def create_user_with_password(
    session: Session, username: str, role: str, password: str | None = None
) -> tuple[User, str | None]:
    """An account for the admin page and CLI: without a password, a one-time password is
    generated, returned once, and must be changed at the first login."""
    if password:
        return create_user(session, username, password, role), None
    generated = one_time_password()
    return create_user(session, username, generated, role, must_change_password=True), generated


def set_active(session: Session, username: str, active: bool) -> User:
    """Deactivate (sessions end, tokens stop working, history stays) or reactivate a user."""
    user = get_user(session, username)
    if not active and user.is_active:
        _keep_an_admin(session, user, "deactivate")
        end_user_sessions(session, user.id)
    user.is_active = active
    session.flush()
    return user


def set_role(session: Session, username: str, role: str) -> User:
    """Change a user's role; their sessions end so every browser signs in with the new one."""
    user = get_user(session, username)
    parsed = parse_role(role)
    if parsed.value != user.role:
        if user.role == Role.admin.value:
            _keep_an_admin(session, user, "demote")
        user.role = parsed.value
        end_user_sessions(session, user.id)
    session.flush()
    return user


def reset_password(session: Session, username: str) -> tuple[User, str]:
    """A new one-time password (returned once, to be changed at the next login); the user's
    sessions end."""
    user = get_user(session, username)
    password = one_time_password()
    user.password_hash = hash_password(password)
    user.must_change_password = True
    end_user_sessions(session, user.id)
    session.flush()
    return user, password


def end_sessions(session: Session, username: str) -> int:
    """Sign a user out everywhere; returns how many sessions ended."""
    return end_user_sessions(session, get_user(session, username).id)


@dataclass(frozen=True)
class SessionInfo:
    id: int
    username: str
    created_at: datetime
    last_seen_at: datetime
    ip: str
    user_agent: str


def list_users(session: Session) -> list[User]:
    return list(session.scalars(select(User).order_by(User.username)))


def session_activity(session: Session, username: str | None = None) -> list[SessionInfo]:
    """Live browser sessions with their last activity (all users, or one)."""
    user_id = get_user(session, username).id if username else None
    return [
        SessionInfo(s.id, s.user.username, s.created_at, s.last_seen_at, s.ip, s.user_agent)
        for s in live_sessions(session, user_id)
    ]


# logins ---------------------------------------------------------------------------------------


def authenticate(session: Session, username: str, password: str, ip: str) -> User:
    """Check a login; throttled per (account, address) and per address (``login_throttle``)."""
    # a name no account can have (wrong shape, NUL, too long) is counted on the address only
    valid_name = bool(USERNAME_RE.match(username))
    reservation = reserve_attempt(session, username if valid_name else None, ip)
    user = session.scalar(select(User).where(User.username == username)) if valid_name else None
    ok = verify_password(password, user.password_hash if user else _DUMMY_HASH)
    if not ok or user is None or not user.is_active:
        raise ServiceError("wrong username or password", status_code=401)
    release_attempt(session, reservation)
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


def list_tokens(session: Session, username: str) -> list[ApiToken]:
    user = get_user(session, username)
    return list(
        session.scalars(select(ApiToken).where(ApiToken.user_id == user.id).order_by(ApiToken.id))
    )


def revoke_token(session: Session, token_id: int, owner: User | None = None) -> ApiToken:
    token = session.get(ApiToken, token_id)
    if token is None or (owner is not None and token.user_id != owner.id):
        raise NotFound(f"no token {token_id}")
    if token.revoked_at is None:
        token.revoked_at = utcnow()
    return token


@dataclass(frozen=True)
class TokenUse:
    """What a request needs of the API token it came with (not the row: loading it as an
    object cost as much as loading the user, on every API request)."""

    id: int
    scopes: tuple[str, ...]


@lru_cache(maxsize=2)
def _token_lookup(versioned: bool) -> Select[Any]:
    """``versioned`` (PostgreSQL): with the user's row version, for ``token_memory``."""
    # Core, the user's columns beside the token's, the object made by ``attached``: the ORM's
    # query cost 35-40 us more CPU per lookup, of ~250 us with its round trips (issue 14)
    version: list[ColumnElement[Any]] = []
    if versioned:
        version.append(literal_column("users.xmin::text").label("user_version"))
    return (
        select(
            *mapped_columns(User),
            ApiToken.id.label("token_id"),
            ApiToken.scopes.label("token_scopes"),
            ApiToken.revoked_at.label("token_revoked_at"),
            ApiToken.last_used_at.label("token_last_used_at"),
            *version,
        )
        .select_from(ApiToken)
        .join(User, User.id == ApiToken.user_id)
        .where(ApiToken.token_hash == bindparam("token_hash", type_=String))
    )


@lru_cache(maxsize=1)
def _token_used() -> Update:
    return (
        update(ApiToken)
        .where(ApiToken.id == bindparam("token_id", type_=Integer))
        .values(last_used_at=bindparam("now", type_=UTCDateTime()))
        .execution_options(synchronize_session=False)
    )


def user_for_token(session: Session, secret: str) -> tuple[User, TokenUse] | None:
    """The active user and token behind a bearer secret, or None; records last use. On
    PostgreSQL, what it finds is remembered: this process's next requests with the token only
    check that nothing changed (``token_memory``)."""
    if not secret.startswith(TOKEN_PREFIX) or len(secret) > 200:
        return None
    # token and user in one statement, built once: this runs on every API request
    versioned = is_postgres(session)
    token_hash = hash_token(secret)
    if versioned:
        known = token_memory.recall(token_hash)
        if known is not None:
            if token_memory.still_valid(session, token_hash, known.user_version):
                token = TokenUse(known.token_id, known.token_scopes)
                return attached(session, User, known.user_values), token
            token_memory.forget(token_hash)  # the lookup tells what changed
    lookup, params = _token_lookup(versioned), {"token_hash": token_hash}
    row = session.connection().execute(lookup, params).first()
    if row is None or row.token_revoked_at is not None or not row.is_active:
        return None
    user = attached(session, User, row._mapping)
    token = TokenUse(row.token_id, tuple(row.token_scopes or ()))
    now = utcnow()
    last_used_at = row.token_last_used_at
    # write at most once a minute: every request touching the row would serialise on it
    if last_used_at is None or now - last_used_at > TOKEN_USE_WRITTEN_EVERY:
        session.execute(_token_used(), {"token_id": row.token_id, "now": now})
        session.commit()
        last_used_at = now
    if versioned:
        values = column_values(User, row._mapping)
        until = last_used_at + TOKEN_USE_WRITTEN_EVERY
        token_memory.remember(
            token_hash,
            token_memory.Remembered(values, token.id, token.scopes, row.user_version, until),
        )
    return user, token
