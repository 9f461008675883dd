"""Prompts after intake: lookup, a labeler's choice of category, and the API's view of one."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db import utcnow
from app.models import Assignment, AssignmentStatus, Prompt, Role, Task, User, role_at_least
from app.services import Invalid, NotFound
from app.services.use_cases import use_case_lookup


def get_prompt(session: Session, prompt_id: int) -> Prompt:
    prompt = session.get(Prompt, prompt_id)
    if prompt is None:
        raise NotFound(f"no prompt {prompt_id}", field="prompt_id")
    return prompt


def may_categorise(session: Session, user: User, prompt: Prompt) -> bool:
    """Researchers categorise any prompt; a labeler only one they hold an active task for, or
    one they wrote themselves."""
    if role_at_least(user.role, Role.researcher) or prompt.author_id == user.id:
        return True
    held = session.scalar(
        select(Assignment.id)
        .join(Task, Task.id == Assignment.task_id)
        .where(
            Task.prompt_id == prompt.id,
            Assignment.labeler_id == user.id,
            Assignment.status == AssignmentStatus.active.value,
            Assignment.lock_expires_at > utcnow(),
        )
        .limit(1)
    )
    return held is not None


def set_prompt_use_case(
    session: Session, prompt_id: int, use_case: str | None, *, by: User | None = None
) -> Prompt:
    """Set (or clear) a prompt's category, as a labeler does after reading it. With ``by``, a
    prompt that user may not categorise is answered exactly like one that does not exist."""
    prompt = get_prompt(session, prompt_id)
    if by is not None and not may_categorise(session, by, prompt):
        raise NotFound(f"no prompt {prompt_id}", field="prompt_id")
    if use_case is None or not use_case.strip():
        prompt.use_case = None
    else:
        names = use_case_lookup(session)
        canonical = names.get(use_case.strip().casefold())
        if canonical is None:
            raise Invalid(f"unknown use case {use_case!r}", field="use_case")
        prompt.use_case = canonical
    session.flush()
    return prompt


def prompt_as_dict(prompt: Prompt) -> dict[str, Any]:
    """The stored prompt as the API shows it."""
    return {
        "prompt_id": prompt.id,
        "text": prompt.text,
        "split": prompt.split,
        "source": prompt.source,
        "kind": prompt.kind,
        "user_id": prompt.user_id,
        "external_id": prompt.external_id,
        "use_case": prompt.use_case,
        "status": prompt.status,
        "reason": prompt.reason,
        "duplicate_of": prompt.duplicate_of_id,
        "pii": prompt.pii,
        "structure": prompt.structure,
        "metadata": prompt.metadata_,
        "created_at": prompt.created_at.isoformat(),
    }
