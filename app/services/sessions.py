"""Browser sessions kept on the server, so that ending one is real.

The signed cookie carries only a random secret; ``user_sessions`` keeps its SHA-256 hash, the
user, the expiry, the last activity and whether it was revoked. Every request looks the row up
(``user_for_session``), so a copied cookie stops working as soon as its session is ended:

- logout ends all of the user's sessions (the copied cookie and the user's other browsers);
- a password change ends all the user's other sessions (the browser that changed it stays in);
- a role change, a deactivation and an admin's password reset end all of them.

Last activity is written at most once a minute, so a busy user does not serialise on the row.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from app.config import get_settings
from app.db import rows_matched, utcnow
from app.models import User, UserSession

SECRET_MAX_CHARS = 200
ACTIVITY_RESOLUTION = timedelta(minutes=1)


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def start_session(session: Session, user: User, *, ip: str = "", user_agent: str = "") -> str:
    """A new session for ``user``; returns the secret to put in the cookie (flushes)."""
    now = utcnow()
    # a login is a good moment to forget this user's ended sessions
    session.execute(
        delete(UserSession).where(
            UserSession.user_id == user.id,
            or_(UserSession.revoked_at.is_not(None), UserSession.expires_at < now),
        )
    )
    secret = secrets.token_urlsafe(32)
    session.add(
        UserSession(
            user_id=user.id,
            key_hash=_hash(secret),
            created_at=now,
            last_seen_at=now,
            expires_at=now + timedelta(seconds=get_settings().session_max_age_s),
            ip=ip[:64],
            user_agent=user_agent[:200],
        )
    )
    session.flush()
    return secret


def user_for_session(session: Session, secret: object) -> tuple[User, UserSession] | None:
    """The active user behind a cookie's session secret, or None when the session has ended;
    records the last activity (commits when it writes)."""
    if not isinstance(secret, str) or not secret or len(secret) > SECRET_MAX_CHARS:
        return None
    # the session and its user in one statement (a page's every request reads both)
    found = session.execute(
        select(UserSession, User)
        .join(User, User.id == UserSession.user_id)
        .where(UserSession.key_hash == _hash(secret))
    ).first()
    now = utcnow()
    if found is None:
        return None
    row, user = found
    if row.revoked_at is not None or row.expires_at <= now or not user.is_active:
        return None
    if now - row.last_seen_at > ACTIVITY_RESOLUTION:
        row.last_seen_at = now
        session.commit()
    return user, row


def end_session(session: Session, secret: object) -> None:
    """End the session behind ``secret`` (if any) and every other session of its user."""
    if not isinstance(secret, str) or len(secret) > SECRET_MAX_CHARS:
        return
    user_id = session.scalar(
        select(UserSession.user_id).where(UserSession.key_hash == _hash(secret))
    )
    if user_id is not None:
        end_user_sessions(session, user_id)


def end_user_sessions(session: Session, user_id: int, *, keep: int | None = None) -> int:
    """End every live session of a user, except the one with id ``keep``; returns how many."""
    query = update(UserSession).where(
        UserSession.user_id == user_id, UserSession.revoked_at.is_(None)
    )
    if keep is not None:
        query = query.where(UserSession.id != keep)
    result = session.execute(query.values(revoked_at=utcnow()))
    return int(rows_matched(result) or 0)


def live_sessions(session: Session, user_id: int | None = None) -> list[UserSession]:
    """Sessions that have not ended, most recently active first (optionally of one user)."""
    query = (
        select(UserSession)
        .where(UserSession.revoked_at.is_(None), UserSession.expires_at > utcnow())
        .order_by(UserSession.last_seen_at.desc())
    )
    if user_id is not None:
        query = query.where(UserSession.user_id == user_id)
    return list(session.scalars(query))
