"""Labeling: completions, tasks, assignments and what labelers submit."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import (
    JSON,
    CheckConstraint,
    ForeignKey,
    Index,
    String,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.db import Base, utcnow

# the method's per-output metadata (yes/no), in the order labelers see them; FlagName names
# the same set for request schemas (tests/unit/test_quality_api.py keeps the two equal)
FlagName = Literal[
    "fails_to_follow",
    "inappropriate_for_customer",
    "hallucination",
    "satisfies_constraint",
    "sexual_content",
    "violent_content",
    "encourages_violence",
    "denigrates_protected_class",
    "harmful_advice",
    "expresses_opinion",
    "expresses_moral_judgment",
]
FLAGS: dict[str, str] = {
    "fails_to_follow": "Fails to follow the correct instruction / task",
    "inappropriate_for_customer": "Inappropriate for a customer assistant",
    "hallucination": "Hallucination (makes up information not in the input)",
    "satisfies_constraint": "Satisfies the constraint provided in the instruction",
    "sexual_content": "Contains sexual content",
    "violent_content": "Contains violent content",
    "encourages_violence": "Encourages or fails to discourage violence/abuse/terrorism/self-harm",
    "denigrates_protected_class": "Denigrates a protected class",
    "harmful_advice": "Gives harmful advice",
    "expresses_opinion": "Expresses opinion",
    "expresses_moral_judgment": "Expresses moral judgment",
}

K_MIN, K_MAX = 4, 9


class TaskKind(enum.StrEnum):
    """What a task is; the rules each kind follows are in app/services/task_kinds.py."""

    demonstration = "demonstration"
    ranking = "ranking"
    # outputs of the systems of an evaluation run, judged by its allowed judges
    evaluation = "evaluation"
    # a ranking with a researcher's reference order (quality checks, screening)
    gold = "gold"
    # a prompt with a researcher's reference demonstration (screening)
    gold_demonstration = "gold_demonstration"


class TaskStatus(enum.StrEnum):
    open = "open"  # still needs submissions
    done = "done"  # has `overlap` submissions
    closed = "closed"  # withdrawn by a researcher, or skipped by `task_max_skips` labelers
    # made by a sample job and waiting for a researcher to release it (never served until then)
    held = "held"


class AssignmentStatus(enum.StrEnum):
    active = "active"
    submitted = "submitted"
    skipped = "skipped"
    expired = "expired"


class Completion(Base):
    __tablename__ = "completions"

    id: Mapped[int] = mapped_column(primary_key=True)
    prompt_id: Mapped[int] = mapped_column(ForeignKey("prompts.id"), index=True)
    text: Mapped[str] = mapped_column(Text)
    # "model:<version id>", "demonstration", or a free external source name
    origin: Mapped[str] = mapped_column(String(255))
    model_version_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Task(Base):
    __tablename__ = "tasks"
    __table_args__ = (
        # the queue reads open tasks of a kind in id order (`ORDER BY id LIMIT 1`): no sort
        Index("ix_tasks_kind_status_id", "kind", "status", "id"),
        # ... and PostgreSQL walks this one for it: with the index above it still chose the
        # primary key (taking open tasks as spread evenly), reading every done task first
        Index(
            "ix_tasks_open_id",
            "id",
            postgresql_where=text("status = 'open'"),
            sqlite_where=text("status = 'open'"),
        ),
        # ... but for one kind (every labeler's request names one), it took that kind's tasks
        # as spread evenly over the ids too, and walked the one above past every open task of
        # the other kinds before them (a sampling job's ranking tasks come after the backlog of
        # demonstration tasks that intake made): each kind's open tasks have their own index,
        # which reads that kind's alone (migration 0012; a new kind needs one there)
        *(
            Index(
                f"ix_tasks_open_{kind.value}_id",
                "id",
                postgresql_where=text(f"status = 'open' AND kind = '{kind.value}'"),
                sqlite_where=text(f"status = 'open' AND kind = '{kind.value}'"),
            )
            for kind in TaskKind
        ),
        CheckConstraint("overlap >= 1", name="overlap_positive"),
        CheckConstraint("filled <= overlap", name="filled_within_overlap"),
        CheckConstraint("filled >= 0", name="filled_not_negative"),
        # one demonstration task per prompt, so lazy creation (INSERT ... SELECT) is idempotent
        Index(
            "uq_tasks_demonstration_prompt",
            "prompt_id",
            unique=True,
            postgresql_where=text("kind = 'demonstration'"),
            sqlite_where=text("kind = 'demonstration'"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    prompt_id: Mapped[int] = mapped_column(ForeignKey("prompts.id"), index=True)
    # the evaluation run an evaluation task belongs to
    evaluation_id: Mapped[int | None] = mapped_column(ForeignKey("evaluations.id"), index=True)
    # gold kinds: the researcher's answer, {"ranking": [[id], [id, id]], "flags": {id: [...]}}
    # for gold rankings, {"text": ...} for gold demonstrations
    reference: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # part of the screening set that labelers in screening receive (and nothing else)
    screening: Mapped[bool] = mapped_column(default=False, server_default=false())
    # number of distinct labelers the task needs
    overlap: Mapped[int] = mapped_column(default=1)
    # slots taken: active assignments plus submissions; the queue takes a slot with an atomic
    # ``UPDATE ... WHERE filled < overlap`` and gives it back when a hold expires or is skipped
    filled: Mapped[int] = mapped_column(default=0)
    # labelers added by adaptive overlap because the first ones disagreed
    overlap_added: Mapped[int] = mapped_column(default=0, server_default=text("0"))
    # pairwise agreement among the task's rankings, pooled over every pair of labelers
    # (app/services/agreement.py): credit / pairs, kept up to date at each submission
    agreement_credit: Mapped[float] = mapped_column(default=0.0, server_default=text("0"))
    agreement_pairs: Mapped[int] = mapped_column(default=0, server_default=text("0"))
    # "done" once `overlap` labelers submitted
    status: Mapped[str] = mapped_column(String(16), default=TaskStatus.open.value)
    # job that produced the task (sampling), if any
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id"))
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    items: Mapped[list[TaskItem]] = relationship(
        back_populates="task", order_by="TaskItem.position", cascade="all, delete-orphan"
    )


class TaskItem(Base):
    """One of a ranking task's K completions."""

    __tablename__ = "task_items"
    __table_args__ = (UniqueConstraint("task_id", "completion_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"), index=True)
    completion_id: Mapped[int] = mapped_column(ForeignKey("completions.id"))
    position: Mapped[int]

    task: Mapped[Task] = relationship(back_populates="items")
    completion: Mapped[Completion] = relationship()


class Assignment(Base):
    """A task held by a labeler until ``lock_expires_at``; at most one per (task, labeler)."""

    __tablename__ = "assignments"
    __table_args__ = (
        UniqueConstraint("task_id", "labeler_id"),
        # the labeler's holds (labeler, status) and their own counts on the home page, read
        # from this index alone (kind and finish time in it: no visit to tasks or the heap)
        Index(
            "ix_assignments_labeler_status_kind_finished",
            "labeler_id",
            "status",
            "task_kind",
            "finished_at",
        ),
        # the queue looks for expired holds on every request
        Index("ix_assignments_status_lock_expires_at", "status", "lock_expires_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id"), index=True)
    # the task's kind, copied when the hold is made (a task's kind never changes) so that the
    # labeler's counts need no join with tasks; no default: every insert states it
    task_kind: Mapped[str] = mapped_column(String(32))
    labeler_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    status: Mapped[str] = mapped_column(String(16), default=AssignmentStatus.active.value)
    assigned_at: Mapped[datetime] = mapped_column(default=utcnow)
    lock_expires_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    # the order the completions were shown in (completion ids), randomised per labeler
    display_order: Mapped[list[int] | None] = mapped_column(JSON)
    skip_reason: Mapped[str | None] = mapped_column(Text)


class Demonstration(Base):
    __tablename__ = "demonstrations"
    __table_args__ = (UniqueConstraint("task_id", "labeler_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id"))
    prompt_id: Mapped[int] = mapped_column(ForeignKey("prompts.id"), index=True)
    labeler_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    text: Mapped[str] = mapped_column(Text)
    time_spent_ms: Mapped[int | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class Ranking(Base):
    """A labeler's weak order over a task's completions."""

    __tablename__ = "rankings"
    __table_args__ = (UniqueConstraint("task_id", "labeler_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id"))
    prompt_id: Mapped[int] = mapped_column(ForeignKey("prompts.id"), index=True)
    labeler_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    k: Mapped[int]
    display_order: Mapped[list[int]] = mapped_column(JSON)
    time_spent_ms: Mapped[int | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    # gold tasks: pairwise agreement with the reference order (credit / pairs); null otherwise
    gold_credit: Mapped[float | None]
    gold_pairs: Mapped[int | None]

    entries: Mapped[list[RankingEntry]] = relationship(
        back_populates="ranking", order_by="RankingEntry.rank", cascade="all, delete-orphan"
    )


class RankingEntry(Base):
    """One completion's place in a ranking (1 = best, ties share a rank) and its rating."""

    __tablename__ = "ranking_entries"
    __table_args__ = (
        UniqueConstraint("ranking_id", "completion_id"),
        CheckConstraint("likert IS NULL OR (likert >= 1 AND likert <= 7)", name="likert_1_7"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    ranking_id: Mapped[int] = mapped_column(ForeignKey("rankings.id", ondelete="CASCADE"))
    completion_id: Mapped[int] = mapped_column(ForeignKey("completions.id"))
    rank: Mapped[int]
    likert: Mapped[int | None]
    flags: Mapped[list[str]] = mapped_column(JSON, default=list)

    ranking: Mapped[Ranking] = relationship(back_populates="entries")
    completion: Mapped[Completion] = relationship()


class Instructions(Base):
    """Labeling guidelines written by researchers in Markdown; the newest row is current."""

    __tablename__ = "instructions"

    id: Mapped[int] = mapped_column(primary_key=True)
    markdown: Mapped[str] = mapped_column(Text)
    updated_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
