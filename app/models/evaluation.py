"""Evaluation runs: systems compared on held-out prompts by judges who rank their outputs."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Float, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.db import Base, utcnow


class Judges(enum.StrEnum):
    """Who may judge an evaluation's tasks."""

    held_out = "held_out"  # only held-out labelers (who produced no training data)
    training = "training"  # only labelers who are not held out
    any = "any"


class EvaluationStatus(enum.StrEnum):
    sampling = "sampling"  # the model versions' outputs are being sampled
    judging = "judging"  # its tasks are in the queue
    failed = "failed"  # sampling failed


class Evaluation(Base):
    __tablename__ = "evaluations"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16), default=EvaluationStatus.judging.value)
    judges: Mapped[str] = mapped_column(String(16), default=Judges.any.value)
    # labelers per evaluation task
    overlap: Mapped[int] = mapped_column(default=1)
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id"))
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # how its prompts were chosen: `prompt_count` accepted prompts of `split` (and `use_case`)
    # drawn with `seed`; no prompt_count: the prompts of the uploaded outputs
    split: Mapped[str] = mapped_column(String(16), default="test", server_default="test")
    use_case: Mapped[str | None] = mapped_column(String(64))
    prompt_count: Mapped[int | None]
    seed: Mapped[int] = mapped_column(default=0, server_default="0")
    # the reward model that scored every output (the RM's view of the results), if any
    rm_model_version_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id"))
    # why sampling failed
    error: Mapped[str | None] = mapped_column(Text)

    systems: Mapped[list[EvaluationSystem]] = relationship(
        back_populates="evaluation", order_by="EvaluationSystem.position"
    )


class EvaluationSystem(Base):
    """One system compared in an evaluation: a registered model version or uploaded outputs."""

    __tablename__ = "evaluation_systems"
    __table_args__ = (UniqueConstraint("evaluation_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    evaluation_id: Mapped[int] = mapped_column(
        ForeignKey("evaluations.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(255))
    model_version_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id"))
    position: Mapped[int] = mapped_column(default=0)
    is_baseline: Mapped[bool] = mapped_column(default=False)

    evaluation: Mapped[Evaluation] = relationship(back_populates="systems")


class EvaluationOutput(Base):
    """Which system wrote which completion for which prompt of an evaluation (the identity
    labelers never see), with the reward model's score and the policy's KL to its SFT model."""

    __tablename__ = "evaluation_outputs"
    __table_args__ = (UniqueConstraint("evaluation_id", "system_id", "prompt_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    evaluation_id: Mapped[int] = mapped_column(
        ForeignKey("evaluations.id", ondelete="CASCADE"), index=True
    )
    system_id: Mapped[int] = mapped_column(ForeignKey("evaluation_systems.id", ondelete="CASCADE"))
    prompt_id: Mapped[int] = mapped_column(ForeignKey("prompts.id"))
    completion_id: Mapped[int] = mapped_column(ForeignKey("completions.id"), unique=True)
    # r(x, y) minus the RM's bias (labeler demonstrations average 0)
    rm_score: Mapped[float | None] = mapped_column(Float)
    # log pi(y|x) - log pi_SFT(y|x), summed over the output's tokens (a one-sample KL estimate)
    kl: Mapped[float | None] = mapped_column(Float)
