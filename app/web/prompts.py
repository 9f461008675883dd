"""HTML pages of prompt intake: labelers' prompt forms, the admin data page, use cases, pins."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session
from starlette.datastructures import FormData

from app.deps import LabelerDep, Principal, ResearcherDep, SessionDep
from app.models import PromptKind
from app.schemas import DbId
from app.schemas.intake import MAX_FEW_SHOT_EXAMPLES
from app.services import ServiceError
from app.services.admin_figures import cached_figures
from app.services.curation import splits
from app.services.intake_labeler import (
    build_labeler_prompt,
    recent_labeler_prompts,
    submit_labeler_prompt,
)
from app.services.intake_stats import data_overview
from app.services.use_cases import add_use_case, list_use_cases, update_use_case
from app.web.templating import render

router = APIRouter(include_in_schema=False)


async def form_data(request: Request) -> FormData:
    """The parsed form, read before the (sync, threadpooled) route runs."""
    return await request.form()


KINDS = {
    PromptKind.plain.value: "Plain",
    PromptKind.few_shot.value: "Few-shot",
    PromptKind.use_case.value: "Use case",
}
STATUS_MESSAGES = {
    "accepted": "Thank you: your prompt was accepted.",
    "duplicate": "This prompt starts like one we already have, so it was recorded as a duplicate.",
    "over_cap": "You have reached the limit of prompts per person; this one was not added.",
}


def _examples_from_form(form: Any) -> list[dict[str, str]]:
    return [
        {"query": str(form.get(f"query_{n}", "")), "response": str(form.get(f"response_{n}", ""))}
        for n in range(MAX_FEW_SHOT_EXAMPLES)
        if f"query_{n}" in form or f"response_{n}" in form
    ]


def _form_page(
    request: Request,
    session: Session,
    principal: Principal,
    kind: str,
    values: dict[str, Any],
    *,
    error: str | None = None,
    field: str | None = None,
    notice: str | None = None,
    status_code: int = 200,
) -> Response:
    mine = recent_labeler_prompts(session, principal.user)
    examples = values.get("examples") or []
    rows = max(3, len(examples))
    examples = examples + [{"query": "", "response": ""}] * (rows - len(examples))
    ctx = {
        "kind": kind if kind in KINDS else PromptKind.plain.value,
        "kinds": KINDS,
        "values": values,
        "examples": examples,
        "use_cases": list_use_cases(session, active_only=True),
        "error": error,
        "error_field": field,
        "notice": notice,
        "mine": mine,
    }
    return render(request, "labeler/prompt_form.html", ctx, status_code=status_code)


@router.get("/labeler/prompts/new")
def new_prompt_form(
    request: Request,
    principal: LabelerDep,
    session: SessionDep,
    kind: str = PromptKind.plain.value,
) -> Response:
    return _form_page(request, session, principal, kind, {})


@router.post("/labeler/prompts/new")
def submit_prompt_form(
    request: Request,
    principal: LabelerDep,
    session: SessionDep,
    form: FormData = Depends(form_data),
) -> Response:
    kind = str(form.get("kind", PromptKind.plain.value))
    values: dict[str, Any] = {
        "text": str(form.get("text", "")),
        "instruction": str(form.get("instruction", "")),
        "use_case": str(form.get("use_case", "")) or None,
        "examples": _examples_from_form(form),
    }
    try:
        item = build_labeler_prompt(kind, **values)
        result = submit_labeler_prompt(session, principal.user, item)
    except ServiceError as exc:
        session.rollback()
        return _form_page(
            request,
            session,
            principal,
            kind,
            values,
            error=exc.detail,
            field=exc.field,
            status_code=exc.status_code,
        )
    notice = STATUS_MESSAGES.get(result["status"], result["status"])
    if result["status"] == "accepted":
        return _form_page(request, session, principal, kind, {}, notice=notice)
    # not added: keep what they wrote so they can change it
    return _form_page(request, session, principal, kind, values, error=notice, status_code=409)


# admin ----------------------------------------------------------------------------------------


@router.get("/admin/data")
def data_page(
    request: Request,
    principal: ResearcherDep,
    session: SessionDep,
) -> Response:
    figures = cached_figures(session, "data page", data_overview)
    if figures is None:
        return render(request, "admin/data.html", {"counting": True})
    return render(request, "admin/data.html", {**figures.value, "computed_at": figures.computed_at})


def _use_case_page(
    request: Request,
    session: Session,
    *,
    error: str | None = None,
    values: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    ctx = {"use_cases": list_use_cases(session), "error": error, "values": values or {}}
    return render(request, "admin/data_use_cases.html", ctx, status_code=status_code)


@router.get("/admin/data/use-cases")
def use_cases_page(
    request: Request,
    principal: ResearcherDep,
    session: SessionDep,
) -> Response:
    return _use_case_page(request, session)


@router.post("/admin/data/use-cases")
def use_case_add(
    request: Request,
    principal: ResearcherDep,
    session: SessionDep,
    form: FormData = Depends(form_data),
) -> Response:
    values = {"name": str(form.get("name", "")), "description": str(form.get("description", ""))}
    try:
        add_use_case(session, values["name"], values["description"])
        session.commit()
    except ServiceError as exc:
        session.rollback()
        return _use_case_page(
            request, session, error=exc.detail, values=values, status_code=exc.status_code
        )
    return RedirectResponse("/admin/data/use-cases", status_code=303)


@router.post("/admin/data/use-cases/{use_case_id}")
def use_case_edit(
    use_case_id: DbId,
    request: Request,
    principal: ResearcherDep,
    session: SessionDep,
    form: FormData = Depends(form_data),
) -> Response:
    raw_position = str(form.get("position", "")).strip()
    try:
        position = int(raw_position) if raw_position else None
    except ValueError:
        return _use_case_page(
            request, session, error="position must be a whole number", status_code=422
        )
    try:
        update_use_case(
            session,
            use_case_id,
            name=str(form.get("name", "")),
            description=str(form.get("description", "")),
            active=form.get("active") == "on",
            position=position,
        )
        session.commit()
    except ServiceError as exc:
        session.rollback()
        return _use_case_page(request, session, error=exc.detail, status_code=exc.status_code)
    return RedirectResponse("/admin/data/use-cases", status_code=303)


def _pins_page(
    request: Request,
    session: Session,
    *,
    error: str | None = None,
    notice: str | None = None,
    values: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    ctx = {
        "pins": splits.list_pins(session),
        "clients": splits.list_clients(session),
        "splits": splits.SPLITS,
        "error": error,
        "notice": notice,
        "values": values or {},
    }
    return render(request, "admin/data_pins.html", ctx, status_code=status_code)


@router.get("/admin/data/pins")
def pins_page(
    request: Request,
    principal: ResearcherDep,
    session: SessionDep,
) -> Response:
    return _pins_page(request, session)


@router.post("/admin/data/pins")
def pin_add(
    request: Request,
    principal: ResearcherDep,
    session: SessionDep,
    form: FormData = Depends(form_data),
) -> Response:
    values = {
        "user_id": str(form.get("user_id", "")),
        "split": str(form.get("split", "")),
        "client": str(form.get("client", "")).strip(),
    }
    try:
        moved = splits.pin_split(session, values["user_id"], values["split"], values["client"])
        session.commit()
    except ServiceError as exc:
        session.rollback()
        return _pins_page(
            request, session, error=exc.detail, values=values, status_code=exc.status_code
        )
    notice = splits.pin_message(session, values["user_id"], values["split"], moved)
    return _pins_page(request, session, notice=notice)


@router.post("/admin/data/pins/{user_id}/delete")
def pin_delete(
    user_id: str,
    request: Request,
    principal: ResearcherDep,
    session: SessionDep,
    form: FormData = Depends(form_data),
) -> Response:
    try:
        splits.unpin_split(session, user_id, str(form.get("client", "")).strip())
        session.commit()
    except ServiceError as exc:
        session.rollback()
        return _pins_page(request, session, error=exc.detail, status_code=exc.status_code)
    return RedirectResponse("/admin/data/pins", status_code=303)
