"""Labeled data for the export tests, written as ORM rows exactly as the services write them.

Used where the JSON API cannot express a case (labels on prompts that are no longer
accepted, created_at times in the past) and as the builder behind ``LabeledData``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from app.db import utcnow
from app.models import (
    Assignment,
    AssignmentStatus,
    Completion,
    Demonstration,
    Prompt,
    Ranking,
    RankingEntry,
    Task,
    TaskItem,
    TaskKind,
    TaskStatus,
)


def add_prompt(
    session: Session,
    text: str,
    *,
    split: str = "train",
    status: str = "accepted",
    source: str = "api",
    use_case: str | None = "Generation",
    user_id: str = "customer-1",
    author_id: int | None = None,
    created_at: datetime | None = None,
) -> Prompt:
    prompt = Prompt(
        text=text,
        source=source,
        kind="api" if source == "api" else "plain",
        user_id=user_id,
        author_id=author_id,
        use_case=use_case,
        split=split,
        status=status,
        created_at=created_at or utcnow(),
    )
    session.add(prompt)
    session.flush()
    return prompt


def add_ranking(
    session: Session,
    prompt: Prompt,
    labeler_id: int,
    texts: list[str],
    groups: list[list[int]],
    *,
    likert: dict[int, int] | None = None,
    flags: dict[int, list[str]] | None = None,
    created_at: datetime | None = None,
) -> Ranking:
    """A submitted ranking of ``texts``; ``groups`` are tie groups of indices, best first."""
    completions = [Completion(prompt_id=prompt.id, text=t, origin="test") for t in texts]
    session.add_all(completions)
    session.flush()
    task = Task(
        kind=TaskKind.ranking.value,
        prompt_id=prompt.id,
        overlap=1,
        filled=1,
        status=TaskStatus.done.value,
    )
    task.items = [TaskItem(completion_id=c.id, position=i) for i, c in enumerate(completions)]
    session.add(task)
    session.flush()
    now = created_at or utcnow()
    order = [c.id for c in completions]
    session.add(
        Assignment(
            task_id=task.id,
            task_kind=task.kind,
            labeler_id=labeler_id,
            status=AssignmentStatus.submitted.value,
            lock_expires_at=now + timedelta(minutes=30),
            finished_at=now,
            display_order=order,
        )
    )
    ranking = Ranking(
        task_id=task.id,
        prompt_id=prompt.id,
        labeler_id=labeler_id,
        k=len(texts),
        display_order=order,
        created_at=now,
    )
    for rank, group in enumerate(groups, start=1):
        for index in group:
            ranking.entries.append(
                RankingEntry(
                    completion_id=completions[index].id,
                    rank=rank,
                    likert=(likert or {}).get(index),
                    flags=(flags or {}).get(index, []),
                )
            )
    session.add(ranking)
    session.flush()
    return ranking


def add_demonstration(
    session: Session,
    prompt: Prompt,
    labeler_id: int,
    text: str,
    *,
    created_at: datetime | None = None,
) -> Demonstration:
    task = Task(kind=TaskKind.demonstration.value, prompt_id=prompt.id, filled=1, status="done")
    session.add(task)
    session.flush()
    now = created_at or utcnow()
    session.add(
        Assignment(
            task_id=task.id,
            task_kind=task.kind,
            labeler_id=labeler_id,
            status=AssignmentStatus.submitted.value,
            lock_expires_at=now,
            finished_at=now,
        )
    )
    demo = Demonstration(
        task_id=task.id, prompt_id=prompt.id, labeler_id=labeler_id, text=text, created_at=now
    )
    session.add(demo)
    session.flush()
    return demo


@dataclass
class Expected:
    """What the tests expect, written down while the data is built."""

    # ranking id -> (prompt id, split, labeler id, tie groups of completion texts)
    rankings: dict[int, tuple[int, str, int, list[list[str]]]] = field(default_factory=dict)
    held_out_rankings: set[int] = field(default_factory=set)
    # demonstration text -> (prompt id, split, labeler id, held out)
    demonstrations: dict[str, tuple[int, str, int, bool]] = field(default_factory=dict)
    prompt_split: dict[int, str] = field(default_factory=dict)
    api_prompts: set[int] = field(default_factory=set)
    unusable_prompts: set[int] = field(default_factory=set)
    skipped_texts: set[str] = field(default_factory=set)
    held_out_labelers: set[int] = field(default_factory=set)
    # prompts written by held-out labelers (left out of the prompts export by default)
    held_out_authored: set[int] = field(default_factory=set)
    # rankings submitted before ``cutoff``
    cutoff: datetime = field(default_factory=utcnow)
    old_rankings: set[int] = field(default_factory=set)
