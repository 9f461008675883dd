"""The API's own description: ``/openapi.json`` and Swagger UI at ``/docs`` (served offline).

Who may read them is a setting: ``PREFLOOP_PUBLIC_API_DOCS=true`` makes them public, the
default keeps them to signed-in users (the README's promise that anonymous visitors reach only
``/login`` and ``/healthz``). The page has no inline script: ``static/js/api_docs.js`` starts
Swagger UI from the vendored files under ``static/vendor/swagger-ui``.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, JSONResponse

from app.config import get_settings
from app.deps import NotAuthenticated, Principal, optional_principal
from app.web.templating import templates

router = APIRouter(include_in_schema=False)


def docs_reader(principal: Principal | None = Depends(optional_principal)) -> None:
    """Dependency: anyone when the docs are public, else any signed-in user or token."""
    if principal is None and not get_settings().public_api_docs:
        raise NotAuthenticated("sign in (or send a token) to read the API description")


@router.get("/openapi.json", dependencies=[Depends(docs_reader)])
def openapi_document(request: Request) -> JSONResponse:
    schema: dict[str, Any] = request.app.openapi()
    return JSONResponse(schema)


@router.get("/docs", dependencies=[Depends(docs_reader)])
def swagger_ui(request: Request) -> HTMLResponse:
    return templates.TemplateResponse(request, "api/docs.html", {})
