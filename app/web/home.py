"""The labeler and admin home pages (later features add their panels)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, Response

from app.config import ROOT
from app.deps import LabelerDep, ResearcherDep
from app.web.templating import render

router = APIRouter(include_in_schema=False)


@router.get("/labeler")
def labeler_home(request: Request, principal: LabelerDep) -> Response:
    return render(request, "labeler/home.html", {})


@router.get("/admin")
def admin_home(request: Request, principal: ResearcherDep) -> Response:
    return render(request, "admin/home.html", {})


@router.get("/favicon.ico")
def favicon() -> FileResponse:
    return FileResponse(ROOT / "static" / "favicon.svg", media_type="image/svg+xml")
