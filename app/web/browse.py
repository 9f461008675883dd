"""The data browser (`/admin/browse`): thin routes over app/services/browse.py. A bad filter is
shown on the page (422) with the form as it was sent."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response

from app.deps import SessionDep, researcher
from app.models import FLAGS
from app.schemas import DbId
from app.services import ServiceError, browse
from app.services.use_cases import list_use_cases
from app.web.templating import render

router = APIRouter(
    prefix="/admin/browse", include_in_schema=False, dependencies=[Depends(researcher)]
)


@router.get("")
def browse_home() -> RedirectResponse:
    return RedirectResponse("/admin/browse/prompts", status_code=307)


@router.get("/prompts/{prompt_id}")
def prompt_page(
    request: Request,
    prompt_id: DbId,
    session: SessionDep,
) -> Response:
    detail = browse.prompt_detail(session, prompt_id)
    return render(request, "admin/browse_prompt.html", {**detail, "flags": FLAGS})


@router.get("/{view}")
def browse_page(
    request: Request,
    view: str,
    session: SessionDep,
) -> Response:
    values = dict(request.query_params)
    ctx: dict[str, Any] = {
        "view": view,
        "views": browse.VIEWS,
        "values": values,
        "statuses": browse.STATUSES.get(view),
        "use_cases": [u.name for u in list_use_cases(session, active_only=False)],
    }
    try:
        filters, status, page = browse.parse_query(
            session, view, list(request.query_params.multi_items())
        )
    except ServiceError as exc:
        if exc.field == "view":
            raise
        ctx.update(error=exc, result=None, export_url=None)
        return render(request, "admin/browse.html", ctx, status_code=exc.status_code)
    ctx["result"] = browse.browse(session, view, filters, status, page)
    others = [(k, v) for k, v in request.query_params.multi_items() if k != "page"]
    ctx["page_query"] = urlencode(others)
    ctx["export_url"] = browse.export_url(view, filters)
    return render(request, "admin/browse.html", ctx)
