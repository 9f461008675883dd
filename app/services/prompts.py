"""Prompts after intake: use-case categories, lookup, and the labeler-written prompt kinds."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.models import DEFAULT_USE_CASES, Prompt, PromptKind, UseCase, User
from app.services import Conflict, Invalid, NotFound

MAX_FEW_SHOT_EXAMPLES = 10


# use cases ------------------------------------------------------------------------------------


def ensure_default_use_cases(session: Session) -> str | None:
    """Seed the method's ten categories when the list is empty (bootstrap, and first use)."""
    if session.scalar(select(func.count()).select_from(UseCase)):
        return None
    for position, name in enumerate(DEFAULT_USE_CASES):
        session.add(UseCase(name=name, position=position))
    session.flush()
    return f"Seeded {len(DEFAULT_USE_CASES)} default use-case categories."


def list_use_cases(session: Session, *, active_only: bool = False) -> list[UseCase]:
    ensure_default_use_cases(session)
    query = select(UseCase).order_by(UseCase.position, UseCase.name)
    if active_only:
        query = query.where(UseCase.active.is_(True))
    return list(session.scalars(query))


def use_case_lookup(session: Session) -> dict[str, str]:
    """Case-folded name -> canonical name of every active use case."""
    return {u.name.casefold(): u.name for u in list_use_cases(session, active_only=True)}


def add_use_case(session: Session, name: str, description: str = "") -> UseCase:
    name = name.strip()
    if not name or len(name) > 64:
        raise Invalid("a use case name needs 1 to 64 characters", field="name")
    if any(u.name.casefold() == name.casefold() for u in list_use_cases(session)):
        raise Conflict(f"use case {name!r} already exists", field="name")
    position = (session.scalar(select(func.max(UseCase.position))) or 0) + 1
    use_case = UseCase(name=name, description=description.strip(), position=position)
    session.add(use_case)
    session.flush()
    return use_case


def update_use_case(
    session: Session,
    use_case_id: int,
    *,
    name: str | None = None,
    description: str | None = None,
    active: bool | None = None,
    position: int | None = None,
) -> UseCase:
    """Rename, describe, reorder or (de)activate a category; a rename updates its prompts."""
    use_case = session.get(UseCase, use_case_id)
    if use_case is None:
        raise NotFound(f"no use case {use_case_id}", field="use_case_id")
    if name is not None and name.strip() != use_case.name:
        new_name = name.strip()
        if not new_name or len(new_name) > 64:
            raise Invalid("a use case name needs 1 to 64 characters", field="name")
        clash = session.scalar(select(UseCase).where(func.lower(UseCase.name) == new_name.lower()))
        if clash is not None and clash.id != use_case.id:
            raise Conflict(f"use case {new_name!r} already exists", field="name")
        session.execute(
            Prompt.__table__.update()
            .where(Prompt.use_case == use_case.name)
            .values(use_case=new_name)
        )
        use_case.name = new_name
    if description is not None:
        use_case.description = description.strip()
    if active is not None:
        use_case.active = active
    if position is not None:
        use_case.position = position
    session.flush()
    return use_case


# prompts --------------------------------------------------------------------------------------


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


# labeler-written prompts ----------------------------------------------------------------------


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
    from app.services.intake import ingest_prompts

    (result,) = ingest_prompts(session, [item], source="labeler", author=author)
    if result["status"] == "rejected":
        field = "use_case" if "use case" in (result["reason"] or "") else "text"
        raise Invalid(result["reason"] or "prompt rejected", field=field)
    return result
