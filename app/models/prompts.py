"""Prompts and what curation decides about them: use cases, split pins, per-user counts."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, utcnow


class Split(enum.StrEnum):
    train = "train"
    val = "val"
    test = "test"


class PromptSource(enum.StrEnum):
    api = "api"
    labeler = "labeler"


class PromptKind(enum.StrEnum):
    """How a prompt was written: the method's three labeler kinds, or from the API."""

    api = "api"
    plain = "plain"
    few_shot = "few_shot"
    use_case = "use_case"


class PromptStatus(enum.StrEnum):
    accepted = "accepted"
    duplicate = "duplicate"
    over_cap = "over_cap"
    rejected = "rejected"
    # PII found under the "drop" policy: kept as a record, never used in a data set
    pii_dropped = "pii_dropped"


DEFAULT_USE_CASES = [
    "Generation",
    "Open QA",
    "Brainstorming",
    "Chat",
    "Rewrite",
    "Summarization",
    "Classification",
    "Other",
    "Closed QA",
    "Extract",
]


class UseCase(Base):
    __tablename__ = "use_cases"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    position: Mapped[int] = mapped_column(default=0)
    active: Mapped[bool] = mapped_column(default=True)


class Prompt(Base):
    __tablename__ = "prompts"
    __table_args__ = (
        # idempotency keys and customer user IDs belong to the client that sent them
        UniqueConstraint("client", "external_id", name="uq_prompts_client_external_id"),
        Index("ix_prompts_client_user_id_status", "client", "user_id", "status"),
        Index("ix_prompts_split_status", "split", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # the text used downstream: after PII redaction for scanned splits
    text: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(16), default=PromptKind.api.value)
    # the ingesting client: the username of the account whose token (or session) sent the
    # prompt; "" for the command-line import, the demo and labeler-written prompts
    client: Mapped[str] = mapped_column(String(64), default="", server_default="")
    # customer's user ID for API prompts (the client's own namespace), "labeler:<id>" for
    # labeler-written ones
    user_id: Mapped[str] = mapped_column(String(255))
    author_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    external_id: Mapped[str | None] = mapped_column(String(255))
    use_case: Mapped[str | None] = mapped_column(String(64), index=True)
    # few-shot prompts keep their structure: {"instruction", "examples": [{"query","response"}]}
    structure: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    metadata_: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSON)
    split: Mapped[str | None] = mapped_column(String(8))
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)
    duplicate_of_id: Mapped[int | None] = mapped_column(ForeignKey("prompts.id"))
    # normalised-text prefix; the first accepted prompt owns it (see the unique index below)
    dedup_key: Mapped[str | None] = mapped_column(String(64), index=True)
    # entity type -> count found by the PII scan; None when not scanned
    pii: Mapped[dict[str, int] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class DedupKey(Base):
    """The owner of each dedup key: inserting here is the atomic duplicate check."""

    __tablename__ = "dedup_keys"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    prompt_id: Mapped[int] = mapped_column(ForeignKey("prompts.id"))


class UserQuota(Base):
    """Accepted prompts per user ID; updated atomically so the cap holds under concurrency."""

    __tablename__ = "user_quotas"

    client: Mapped[str] = mapped_column(String(64), primary_key=True, server_default="")
    user_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    accepted: Mapped[int] = mapped_column(default=0)


class SplitPin(Base):
    """A researcher's choice of split for a user ID, overriding the hash."""

    __tablename__ = "split_pins"

    client: Mapped[str] = mapped_column(String(64), primary_key=True, server_default="")
    user_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    split: Mapped[str] = mapped_column(String(8))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
