"""Test data for the labeling tests: accepted prompts (through the ORM) and ranking tasks."""

from __future__ import annotations

import itertools
from typing import Any

_n = itertools.count()


def make_prompt(
    text: str | None = None,
    *,
    author_id: int | None = None,
    split: str = "train",
    structure: dict[str, Any] | None = None,
    status: str = "accepted",
) -> int:
    """An accepted prompt (the state intake leaves a prompt in); returns its id."""
    from app.db import get_sessionmaker
    from app.models import Prompt

    n = next(_n)
    with get_sessionmaker()() as s:
        prompt = Prompt(
            text=text or f"Write a short poem about the number {n}.",
            source="labeler" if author_id else "api",
            kind="few_shot" if structure else ("plain" if author_id else "api"),
            user_id=f"labeler:{author_id}" if author_id else f"customer-{n}",
            author_id=author_id,
            structure=structure,
            split=split,
            status=status,
        )
        s.add(prompt)
        s.commit()
        return prompt.id


def make_ranking_task(
    prompt_id: int, texts: list[str] | None = None, *, k: int = 5, overlap: int = 1
) -> tuple[int, list[int]]:
    """A ranking task over ``texts`` (or k generated outputs); returns (task id, completion ids)."""
    from app.db import get_sessionmaker
    from app.services.completions import add_completions, create_ranking_task

    texts = texts or [f"Output number {i} for prompt {prompt_id}." for i in range(k)]
    with get_sessionmaker()() as s:
        rows = add_completions(s, prompt_id, [{"text": t, "origin": "test"} for t in texts])
        task = create_ranking_task(s, prompt_id, [c.id for c in rows], overlap=overlap)
        s.commit()
        return task.id, [c.id for c in rows]
