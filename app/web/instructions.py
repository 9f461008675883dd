"""The labeling instructions: read by everyone, edited by researchers at /admin/instructions."""

from __future__ import annotations

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from app.deps import LabelerDep, ResearcherDep, SessionDep
from app.services import ServiceError
from app.services.instructions import (
    current_instructions,
    current_markdown,
    render_markdown,
    save_instructions,
)
from app.web.templating import render

router = APIRouter(include_in_schema=False)


@router.get("/instructions")
def instructions_page(
    request: Request,
    principal: LabelerDep,
    session: SessionDep,
) -> Response:
    current = current_instructions(session)
    ctx = {
        "html": render_markdown(current_markdown(session)),
        "updated_at": current.created_at if current else None,
    }
    return render(request, "labeler/instructions.html", ctx)


@router.get("/admin/instructions")
def instructions_edit(
    request: Request,
    principal: ResearcherDep,
    session: SessionDep,
    saved: bool = False,
) -> Response:
    markdown = current_markdown(session)
    ctx = {"markdown": markdown, "preview": render_markdown(markdown), "saved": saved}
    return render(request, "admin/instructions.html", ctx)


@router.post("/admin/instructions/preview")
def instructions_preview(
    request: Request,
    principal: ResearcherDep,
    markdown: str = Form(""),
) -> Response:
    """htmx: the sanitised rendering of the text being edited."""
    return render(
        request, "partials/instructions_preview.html", {"preview": render_markdown(markdown)}
    )


@router.post("/admin/instructions")
def instructions_save(
    request: Request,
    principal: ResearcherDep,
    session: SessionDep,
    markdown: str = Form(""),
) -> Response:
    try:
        save_instructions(session, markdown, principal.user)
    except ServiceError as exc:
        ctx = {"markdown": markdown, "preview": render_markdown(markdown), "error": exc.detail}
        return render(request, "admin/instructions.html", ctx, status_code=exc.status_code)
    session.commit()
    return RedirectResponse("/admin/instructions?saved=1", status_code=303)
