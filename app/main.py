"""The FastAPI application: routers, templates, static files, sessions, error handling."""

from __future__ import annotations

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.sessions import SessionMiddleware

from app.api import completions as completions_api
from app.api import evaluations as evaluations_api
from app.api import export, system
from app.api import jobs as jobs_api
from app.api import prompts as prompts_api
from app.api import quality as quality_api
from app.api import tasks as tasks_api
from app.api.errors import (
    allowed_methods,
    body_parse_failed,
    error_body,
    invalid_body,
    openapi_document,
)
from app.clients import SESSION_COOKIE
from app.config import ROOT, get_settings
from app.deps import CSRFError, Forbidden, NotAuthenticated, PasswordChangeRequired, csrf_protect
from app.middleware import (
    AuthenticateBeforeBody,
    DatabaseBusy,
    ReceiveSmallBody,
    RequestSizeLimit,
    SecurityHeaders,
    deferred_lookup_failed,
    wants_json,
)
from app.services import Invalid, ServiceError
from app.web import api_docs, auth, browse, home, instructions, labeler, labeler_work, users
from app.web import evaluations as evaluations_web
from app.web import jobs as jobs_web
from app.web import prompts as prompts_web
from app.web import quality as quality_web
from app.web.templating import render

ROUTERS = [
    # first: requests are matched against the routers in this order, and the labeling API's
    # next/submit loop is most of the traffic (issue 14's profile: route matching was ~8% of
    # its CPU when it came 13th)
    tasks_api.router,
    system.router,
    api_docs.router,
    auth.router,
    home.router,
    export.router,
    jobs_api.router,
    jobs_web.router,
    prompts_api.router,
    prompts_web.router,
    completions_api.router,
    evaluations_api.router,
    evaluations_web.router,
    quality_api.router,
    labeler_work.router,
    browse.router,
    labeler.router,
    instructions.router,
    quality_web.router,
    users.router,
]


def _wants_json(request: Request) -> bool:
    return wants_json(request.url.path, request.headers)


def create_app() -> FastAPI:
    settings = get_settings()
    app = FastAPI(
        title="prefloop",
        version="0.1.0",
        description="Human feedback in, instruction-following models out.",
        dependencies=[Depends(csrf_protect)],
        # served by app/api/docs.py: offline, without inline script, public only by setting
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    # added innermost first: the request passes SecurityHeaders, RequestSizeLimit,
    # ReceiveSmallBody, DatabaseBusy, the session cookie, then AuthenticateBeforeBody
    app.add_middleware(AuthenticateBeforeBody)
    app.add_middleware(
        SessionMiddleware,
        secret_key=settings.session_secret(),
        session_cookie=SESSION_COOKIE,
        max_age=settings.session_max_age_s,
        same_site="lax",
        https_only=settings.cookie_secure,
    )
    app.add_middleware(DatabaseBusy)
    app.add_middleware(ReceiveSmallBody)
    app.add_middleware(
        RequestSizeLimit,
        max_bytes=settings.max_request_bytes,
        max_body_bytes=settings.max_body_bytes,
    )
    app.add_middleware(SecurityHeaders)
    app.mount("/static", StaticFiles(directory=str(ROOT / "static")), name="static")
    for router in ROUTERS:
        app.include_router(router)

    @app.exception_handler(NotAuthenticated)
    def _not_authenticated(request: Request, exc: NotAuthenticated) -> Response:
        if _wants_json(request):
            detail = str(exc) or "authentication required"
            return JSONResponse(
                {"detail": detail}, status_code=401, headers={"WWW-Authenticate": "Bearer"}
            )
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={target}", status_code=303)

    def _not_authenticated_first(request: Request) -> Response | None:
        """The 401 a stranger gets before any 422, for a request whose route was to look its
        caller up but never ran (``app.middleware.deferred_lookup_failed``)."""
        problem = deferred_lookup_failed(request)
        return None if problem is None else _not_authenticated(request, NotAuthenticated(problem))

    @app.exception_handler(Forbidden)
    def _forbidden(request: Request, exc: Forbidden) -> Response:
        if _wants_json(request):
            return JSONResponse({"detail": exc.detail}, status_code=403)
        return render(request, "error.html", {"message": exc.detail}, status_code=403)

    @app.exception_handler(PasswordChangeRequired)
    def _password_change_required(request: Request, exc: PasswordChangeRequired) -> Response:
        if _wants_json(request):
            message = "your password was generated for you: change it at /account/password first"
            return JSONResponse({"detail": message, "field": "password"}, status_code=403)
        return RedirectResponse("/account/password", status_code=303)

    @app.exception_handler(CSRFError)
    def _csrf(request: Request, exc: CSRFError) -> Response:
        message = "missing or invalid CSRF token; reload the page and try again"
        if _wants_json(request):
            return JSONResponse({"detail": message}, status_code=403)
        return render(request, "error.html", {"message": message}, status_code=403)

    @app.exception_handler(ServiceError)
    def _service_error(request: Request, exc: ServiceError) -> Response:
        response: Response
        if _wants_json(request):
            response = JSONResponse(error_body(exc), status_code=exc.status_code)
        else:
            response = render(
                request, "error.html", {"message": exc.detail}, status_code=exc.status_code
            )
        if exc.status_code == 503:
            response.headers["Retry-After"] = str(get_settings().db_retry_after_s)
        return response

    @app.exception_handler(StarletteHTTPException)
    def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        """Unknown URLs (and other HTTP errors) as JSON under /api/, as a page elsewhere."""
        if body_parse_failed(exc):
            return _not_authenticated_first(request) or _service_error(request, invalid_body(exc))
        headers = exc.headers
        if exc.status_code == 405:  # every method of the path, not only the first route's
            headers = {**(headers or {}), "Allow": ", ".join(allowed_methods(request))}
        if _wants_json(request):
            return JSONResponse(
                {"detail": exc.detail}, status_code=exc.status_code, headers=headers
            )
        if exc.status_code == 404:
            ctx = {"path": request.url.path, "message": exc.detail}
            return render(request, "not_found.html", ctx, status_code=404)
        return render(
            request,
            "error.html",
            {"message": exc.detail},
            status_code=exc.status_code,
            headers=headers,
        )

    @app.exception_handler(RequestValidationError)
    def _validation(request: Request, exc: RequestValidationError) -> Response:
        stranger = _not_authenticated_first(request)
        if stranger is not None:
            return stranger
        if not _wants_json(request) and any(err["loc"][:1] == ("path",) for err in exc.errors()):
            # a page URL with an id no row can have (not a number, past 32 bits) names nothing
            return render(request, "error.html", {"message": "page not found"}, status_code=404)
        # one 422 shape for every route (JSON also for a form post: its page cannot say
        # which field a hand-made request left out), by the conversion the services use
        invalid = Invalid.from_errors(exc.errors())
        return JSONResponse(error_body(invalid), status_code=422)

    app.openapi = lambda: openapi_document(app)  # type: ignore[method-assign]
    return app
