"""Completions (model or external outputs for a prompt) and the ranking tasks built from them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.config import get_settings
from app.models import (
    Completion,
    ModelVersion,
    Prompt,
    PromptStatus,
    Task,
    TaskItem,
    TaskKind,
    User,
)
from app.services import Invalid, NotFound
from app.services.curation.pii_policy import redact_completion_texts
from app.services.labeling_settings import overlap_settings
from app.services.task_kinds import spec_of

ORIGIN_MAX_CHARS = 255
MAX_COMPLETIONS_PER_CALL = 100
# more distinct labelers than this per task is almost certainly a typo
MAX_OVERLAP = 20


def agreement_overlap_for(session: Session, prompt_id: int) -> int:
    """The overlap a new task gets by default: `agreement_overlap` for a share of prompts.

    The choice is deterministic (by prompt id, so a share of 0.2 picks ids ending in 00-19 of
    every hundred), which keeps it reproducible and equal to the SQL used for lazy tasks.
    Both come from the environment unless changed in the app (labeling_settings).
    """
    settings = overlap_settings(session)
    if prompt_id % 100 < round(settings.agreement_share * 100):
        return settings.agreement_overlap
    return 1


def accepted_prompt(session: Session, prompt_id: int, field: str = "prompt_id") -> Prompt:
    prompt = session.get(Prompt, prompt_id)
    if prompt is None:
        raise NotFound(f"prompt {prompt_id} does not exist", field=field)
    if prompt.status != PromptStatus.accepted.value:
        raise Invalid(
            f"prompt {prompt_id} is not accepted (status {prompt.status!r}); only accepted "
            "prompts are labeled",
            field=field,
        )
    return prompt


def add_completions(
    session: Session, prompt_id: int, items: Sequence[dict[str, Any]]
) -> list[Completion]:
    """Store completions for an accepted prompt; every item is checked before any is written."""
    prompt = accepted_prompt(session, prompt_id)
    if not items:
        raise Invalid("give at least one completion", field="completions")
    if len(items) > MAX_COMPLETIONS_PER_CALL:
        raise Invalid(
            f"at most {MAX_COMPLETIONS_PER_CALL} completions per call", field="completions"
        )
    max_chars = get_settings().demonstration_max_chars
    rows = []
    for i, item in enumerate(items):
        text = item.get("text")
        origin = item.get("origin")
        if not isinstance(text, str) or not text.strip():
            raise Invalid("text must be a non-empty string", field=f"completions.{i}.text")
        if len(text) > max_chars:
            raise Invalid(
                f"text is longer than {max_chars} characters", field=f"completions.{i}.text"
            )
        if not isinstance(origin, str) or not origin.strip() or len(origin) > ORIGIN_MAX_CHARS:
            raise Invalid(
                f"origin must be a non-empty string of at most {ORIGIN_MAX_CHARS} characters "
                "(e.g. 'model:3' or a vendor name)",
                field=f"completions.{i}.origin",
            )
        version_id = item.get("model_version_id")
        if version_id is not None and session.get(ModelVersion, version_id) is None:
            raise NotFound(
                f"model version {version_id} does not exist",
                field=f"completions.{i}.model_version_id",
            )
        rows.append(
            Completion(
                prompt_id=prompt_id,
                text=text,
                origin=origin.strip(),
                model_version_id=version_id,
            )
        )
    texts = redact_completion_texts(prompt.split, [row.text for row in rows], "completions")
    for row, text in zip(rows, texts, strict=True):
        row.text = text
    session.add_all(rows)
    session.flush()
    return rows


def create_ranking_task(
    session: Session,
    prompt_id: int,
    completion_ids: Sequence[int],
    overlap: int | None = 1,
    job_id: int | None = None,
    created_by: User | None = None,
    *,
    kind: TaskKind = TaskKind.ranking,
    **task_fields: Any,
) -> Task:
    """A task of a ranking form (ranking, evaluation, gold) over distinct completions of one
    accepted prompt, as many as the kind allows (rankings: 4..9).

    ``overlap=None`` applies the configured agreement share (see `agreement_overlap_for`);
    ``task_fields`` sets the kind's own columns (``evaluation_id``, ``reference``, ``screening``).
    """
    ids = checked_completions(session, prompt_id, completion_ids, kind)
    if overlap is None:
        overlap = agreement_overlap_for(session, prompt_id)
    if not 1 <= overlap <= MAX_OVERLAP:
        raise Invalid(f"overlap must be between 1 and {MAX_OVERLAP}", field="overlap")
    task = Task(
        kind=kind.value,
        prompt_id=prompt_id,
        overlap=overlap,
        job_id=job_id,
        created_by_id=created_by.id if created_by is not None else None,
        **task_fields,
    )
    task.items = [TaskItem(completion_id=cid, position=i) for i, cid in enumerate(ids)]
    session.add(task)
    session.flush()
    return task


def checked_completions(
    session: Session, prompt_id: int, completion_ids: Sequence[int], kind: TaskKind
) -> list[int]:
    """The outputs of a new ``kind`` task: distinct completions of one accepted prompt, as many
    as the kind allows; 422 naming ``completion_ids`` otherwise."""
    spec = spec_of(kind.value)
    if spec.form != "ranking":
        raise ValueError(f"{kind} tasks are not rankings")
    accepted_prompt(session, prompt_id)
    ids = list(completion_ids)
    if len(ids) != len(set(ids)):
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        raise Invalid(f"completion ids repeated: {dupes}", field="completion_ids")
    spec.check_k(len(ids))
    found = dict(
        session.execute(
            select(Completion.id, Completion.prompt_id).where(Completion.id.in_(ids))
        ).all()
    )
    missing = [i for i in ids if i not in found]
    if missing:
        raise Invalid(f"unknown completion ids: {missing}", field="completion_ids")
    foreign = [i for i in ids if found[i] != prompt_id]
    if foreign:
        raise Invalid(
            f"completions {foreign} belong to another prompt, not prompt {prompt_id}",
            field="completion_ids",
        )
    return ids
