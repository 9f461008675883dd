"""Prompts after intake: lookup, a labeler's choice of category, and the API's view of one."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from app.models import Prompt
from app.services import Invalid, NotFound
from app.services.use_cases import use_case_lookup


def get_prompt(session: Session, prompt_id: int) -> Prompt:
    prompt = session.get(Prompt, prompt_id)
    if prompt is None:
        raise NotFound(f"no prompt {prompt_id}", field="prompt_id")
    return prompt


def set_prompt_use_case(session: Session, prompt_id: int, use_case: str | None) -> Prompt:
    """Set (or clear) a prompt's category, as a labeler does after reading it."""
    prompt = get_prompt(session, prompt_id)
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
