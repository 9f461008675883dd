"""Labeler quality: screening decisions and the labeling settings researchers change in the app."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, utcnow


class LabelingSetting(Base):
    """A labeling setting changed on the admin page; it overrides the environment's default."""

    __tablename__ = "labeling_settings"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[Any] = mapped_column(JSON)
    updated_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ScreeningDecision(Base):
    """A researcher's decision on a labeler in screening (approved or rejected), kept as a log."""

    __tablename__ = "screening_decisions"

    id: Mapped[int] = mapped_column(primary_key=True)
    labeler_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    decision: Mapped[str] = mapped_column(String(16))
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    note: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
