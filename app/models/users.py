"""Accounts: users, browser sessions, API tokens and login throttling state."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import JSON, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.db import Base, utcnow


class Role(enum.StrEnum):
    labeler = "labeler"
    researcher = "researcher"
    admin = "admin"


# what each role may do; a role includes the ones before it
ROLE_ORDER = [Role.labeler, Role.researcher, Role.admin]


def role_at_least(role: str, minimum: Role) -> bool:
    return ROLE_ORDER.index(Role(role)) >= ROLE_ORDER.index(minimum)


class LabelerStatus(enum.StrEnum):
    """Where a labeler stands: new labelers are in screening when screening is on."""

    screening = "screening"  # receives only the screening set until a researcher decides
    approved = "approved"
    rejected = "rejected"  # receives no tasks


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16), default=Role.labeler.value)
    # held-out labelers produce no training data (exports and evaluation read this flag)
    held_out: Mapped[bool] = mapped_column(default=False)
    is_active: Mapped[bool] = mapped_column(default=True)
    labeler_status: Mapped[str] = mapped_column(
        String(16),
        default=LabelerStatus.approved.value,
        server_default=LabelerStatus.approved.value,
    )
    # set when the password was generated for the user and must be changed
    must_change_password: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_login_at: Mapped[datetime | None]

    tokens: Mapped[list[ApiToken]] = relationship(back_populates="user")


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100), default="")
    # sha256 of the secret; the secret itself is shown once and never stored
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # the first characters of the token, to tell tokens apart in listings
    prefix: Mapped[str] = mapped_column(String(16))
    # extra scopes beyond the owner's role, e.g. "ingest" for a customer's ingest-only token
    scopes: Mapped[list[str]] = mapped_column(default=list, type_=JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]

    user: Mapped[User] = relationship(back_populates="tokens")


class UserSession(Base):
    """One signed-in browser: the cookie holds a random secret, this row its hash.

    Checked on every request, so a session ends for real (logout, password change, role
    change, deactivation) instead of living on in a copied cookie.
    """

    __tablename__ = "user_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    # sha256 of the cookie's secret; the secret itself lives only in the signed cookie
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    # written at most once a minute (see services.sessions)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None]
    ip: Mapped[str] = mapped_column(String(64), default="")
    user_agent: Mapped[str] = mapped_column(String(200), default="")

    user: Mapped[User] = relationship()


class LoginThrottle(Base):
    """Recent failed logins of one client address (``username`` empty) or of one account from
    one address; shared by every web process. See ``services.login_throttle``."""

    __tablename__ = "login_throttles"

    username: Mapped[str] = mapped_column(String(64), primary_key=True)
    ip: Mapped[str] = mapped_column(String(64), primary_key=True)
    failures: Mapped[int] = mapped_column(default=0)
    last_failure_at: Mapped[datetime] = mapped_column(default=utcnow)
    blocked_until: Mapped[datetime | None]
