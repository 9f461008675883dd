"""Use-case categories: the method's ten defaults, edited by researchers, chosen by labelers."""

from __future__ import annotations

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from app.models import DEFAULT_USE_CASES, Prompt, UseCase
from app.services import Conflict, Invalid, NotFound


def ensure_default_use_cases(session: Session) -> str | None:
    """Seed the method's ten categories when the list is empty (a bootstrap step: reading
    the list never writes)."""
    if session.scalar(select(func.count()).select_from(UseCase)):
        return None
    for position, name in enumerate(DEFAULT_USE_CASES):
        session.add(UseCase(name=name, position=position))
    session.flush()
    return f"Seeded {len(DEFAULT_USE_CASES)} default use-case categories."


def list_use_cases(session: Session, *, active_only: bool = False) -> list[UseCase]:
    query = select(UseCase).order_by(UseCase.position, UseCase.name)
    if active_only:
        query = query.where(UseCase.active.is_(True))
    return list(session.scalars(query))


def use_case_lookup(session: Session) -> dict[str, str]:
    """Case-folded name -> canonical name of every active use case."""
    return {u.name.casefold(): u.name for u in list_use_cases(session, active_only=True)}


def check_known_use_case(session: Session, name: str, field: str = "use_case") -> None:
    """A filter on a use case nobody knows (as a category or a prompt's use case) names
    nothing: 404, naming the parameter."""
    known = select(UseCase.id).where(UseCase.name == name)
    used = select(Prompt.id).where(Prompt.use_case == name)
    if not session.scalar(select(known.exists() | used.exists())):
        raise NotFound(f"unknown use case {name!r}", field=field)


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
            update(Prompt)
            .where(Prompt.use_case == use_case.name)
            .values(use_case=new_name)
            .execution_options(synchronize_session=False)  # a Core UPDATE, as before
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
