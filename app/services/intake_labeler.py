"""Prompts labelers write (plain, few-shot, for a use case): checked, then through intake."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import Prompt, PromptKind, User
from app.schemas.intake import MAX_FEW_SHOT_EXAMPLES
from app.services import Invalid
from app.services.intake import ingest_prompts, labeler_user_id


def render_few_shot(instruction: str, examples: list[dict[str, str]]) -> str:
    """One prompt text from an instruction and query/response pairs (the last query open)."""
    parts = [instruction.strip()]
    for example in examples:
        parts.append(f"Input: {example['query'].strip()}\nOutput: {example['response'].strip()}")
    return "\n\n".join(parts)


def build_labeler_prompt(
    kind: str,
    *,
    text: str = "",
    instruction: str = "",
    examples: list[dict[str, str]] | None = None,
    use_case: str | None = None,
) -> dict[str, Any]:
    """Check a labeler's form and return the intake item; raises Invalid naming the field."""
    if kind == PromptKind.plain.value:
        if not text.strip():
            raise Invalid("write the prompt text", field="text")
        return {"text": text, "kind": kind, "use_case": use_case or None}
    if kind == PromptKind.use_case.value:
        if not use_case:
            raise Invalid("choose the use case this prompt is for", field="use_case")
        if not text.strip():
            raise Invalid("write the prompt text", field="text")
        return {"text": text, "kind": kind, "use_case": use_case}
    if kind == PromptKind.few_shot.value:
        if not instruction.strip():
            raise Invalid("write the instruction", field="instruction")
        pairs = [
            {"query": e.get("query", ""), "response": e.get("response", "")}
            for e in (examples or [])
            if e.get("query", "").strip() or e.get("response", "").strip()
        ]
        if len(pairs) < 2:
            raise Invalid("give at least two query/response examples", field="examples")
        if len(pairs) > MAX_FEW_SHOT_EXAMPLES:
            raise Invalid(f"at most {MAX_FEW_SHOT_EXAMPLES} examples", field="examples")
        for n, pair in enumerate(pairs):
            for part in ("query", "response"):
                if not pair[part].strip():
                    raise Invalid(f"example {n + 1} needs a {part}", field=f"examples.{n}.{part}")
        structure = {"instruction": instruction.strip(), "examples": pairs}
        return {
            "text": render_few_shot(instruction, pairs),
            "kind": kind,
            "structure": structure,
            "use_case": use_case or None,
        }
    raise Invalid("kind must be plain, few_shot or use_case", field="kind")


def submit_labeler_prompt(session: Session, author: User, item: dict[str, Any]) -> dict[str, Any]:
    """Run a labeler's prompt through intake; a rejected or over-cap prompt raises Invalid."""
    (result,) = ingest_prompts(session, [item], source="labeler", author=author)
    if result["status"] == "rejected":
        field = "use_case" if "use case" in (result["reason"] or "") else "text"
        raise Invalid(result["reason"] or "prompt rejected", field=field)
    return result


def recent_labeler_prompts(session: Session, author: User, limit: int = 10) -> list[Prompt]:
    """The prompts ``author`` wrote, newest first."""
    return list(
        session.scalars(
            select(Prompt)
            .where(Prompt.user_id == labeler_user_id(author))
            .order_by(Prompt.id.desc())
            .limit(limit)
        )
    )
