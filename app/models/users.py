"""Accounts: users, API tokens and login attempts (for throttling)."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Index, String
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


class LoginAttempt(Base):
    """One failed login, kept for the throttling window (shared by every web process)."""

    __tablename__ = "login_attempts"
    __table_args__ = (
        Index("ix_login_attempts_username_at", "username", "at"),
        Index("ix_login_attempts_ip_at", "ip", "at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64))
    ip: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(default=utcnow)
