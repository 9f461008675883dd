"""One error shape for every route, and an OpenAPI document that declares it.

Every JSON error is ``{"detail", "field"}`` (``ErrorOut``); every 422 adds ``errors``, the full
Pydantic list (``ValidationErrorOut``). The handlers in ``app/main.py`` build the bodies with
``error_body``; ``openapi_document`` declares, for each operation, the statuses the app's
machinery gives it (401/403 behind a role, 404 for an id in the path, 413/422 for input) plus
those its route lists with ``errors(...)`` (409, 503 ...), and the request bodies a service
validates itself (``documented_body``: a job's parameters per kind).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from pydantic import TypeAdapter
from pydantic.json_schema import models_json_schema
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import BaseRoute, Route

from app.db import get_readonly_session, get_session
from app.schemas.errors import ErrorOut, ValidationErrorOut
from app.services import Invalid, ServiceError

DESCRIPTIONS = {
    400: "a malformed request (a Content-Length that is not a number)",
    401: "no or invalid credentials",
    403: "not allowed for your role or token scope, a password to change first, or no CSRF token",
    404: "no such object (or one you may not see)",
    409: "the object is not in a state that allows this",
    408: "the request body did not arrive within PREFLOOP_BODY_TIMEOUT_S (the connection is "
    "closed)",
    413: "the request body is over PREFLOOP_MAX_BODY_BYTES (PREFLOOP_MAX_REQUEST_BYTES for the "
    "bulk routes: prompts, completions, evaluations), or holds more than "
    "PREFLOOP_MAX_JSON_VALUES JSON values",
    422: "invalid input: `detail` and `field` name the first problem, `errors` lists them all",
    429: "too many attempts: wait and try again",
    503: "a service the request needs is unavailable: the database is saturated (retry after "
    "`Retry-After` seconds), the job broker is unreachable, whole-table figures are still "
    "being counted, or PREFLOOP_EXPORT_STREAMS exports are streaming already (retry after "
    "`Retry-After` seconds)",
}
# who may call: a bearer token (the JSON API's way), or the browser's session cookie (unsafe
# methods then also need the X-CSRF-Token header); app/deps.py checks both
SECURITY_SCHEMES = {
    "bearer": {"type": "http", "scheme": "bearer", "description": "an API token"},
    "session": {
        "type": "apiKey",
        "in": "cookie",
        "name": "prefloop_session",
        "description": "the signed-in browser's session (unsafe methods: X-CSRF-Token too)",
    },
}
# The one 429 the app answers is a throttled login (POST /login, an HTML form, not in this
# document); no JSON operation is rate limited.
_SCHEMAS = "#/components/schemas/"
_BODY_PARSE_ERROR = "There was an error parsing the body"
# name -> the type a service validates a body against, where the route reads a looser one
_DOCUMENTED_BODIES: dict[str, TypeAdapter[Any]] = {}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route that can also answer ``codes`` (with the shared bodies)."""
    return {
        code: {
            "model": ValidationErrorOut if code == 422 else ErrorOut,
            "description": DESCRIPTIONS[code],
        }
        for code in codes
    }


def documented_body(name: str, shape: Any) -> dict[str, Any]:
    """``openapi_extra=`` for a route that reads a loose body (``{"kind", "params": {...}}``)
    and lets its service validate it against ``shape`` (a union per kind, say): the document
    shows ``shape`` as the component ``name``, which is what the route really accepts."""
    _DOCUMENTED_BODIES[name] = TypeAdapter(shape)
    ref = {"schema": {"$ref": _SCHEMAS + name}}
    return {"requestBody": {"content": {"application/json": ref}, "required": True}}


def error_body(exc: ServiceError) -> dict[str, Any]:
    """The JSON body of a service error; a 422 also lists every problem."""
    body: dict[str, Any] = {"detail": exc.detail, "field": exc.field}
    if exc.status_code == 422:
        invalid = exc if isinstance(exc, Invalid) else Invalid(exc.detail, field=exc.field)
        body["errors"] = invalid.error_list()
    return body


def body_parse_failed(exc: StarletteHTTPException) -> bool:
    """FastAPI's 400 for a JSON body its decoder gave up on (not UTF-8, nested too deeply)."""
    return exc.status_code == 400 and exc.detail == _BODY_PARSE_ERROR


def invalid_body(exc: StarletteHTTPException) -> Invalid:
    """That 400 as the 422 any other unreadable body gets."""
    cause = exc.__cause__
    if isinstance(cause, RecursionError):
        return Invalid("request body is nested too deeply", field="body")
    return Invalid(f"request body is not valid JSON ({cause})", field="body")


def _flat_routes(routes: list[BaseRoute]) -> list[BaseRoute]:
    """Every route, also those inside included routers (kept nested by newer FastAPI)."""
    found: list[BaseRoute] = []
    for route in routes:
        nested = getattr(route, "original_router", None)
        found.extend(_flat_routes(nested.routes) if nested is not None else [route])
    return found


def allowed_methods(request: Request) -> list[str]:
    """The methods some route offers at this request's path (for a 405's ``Allow``)."""
    path = request.scope["path"]
    methods: set[str] = set()
    for route in _flat_routes(request.app.router.routes):
        if isinstance(route, Route) and route.methods and route.path_regex.match(path):
            methods |= route.methods
    return sorted(methods)


def _requires_sign_in(route: APIRoute) -> bool:
    stack = [route.dependant]
    while stack:
        dep = stack.pop()
        if dep.call is not None and hasattr(dep.call, "minimum_role"):
            return True
        stack.extend(dep.dependencies)
    return False


def _uses_database(route: APIRoute) -> bool:
    stack = [route.dependant]
    while stack:
        dep = stack.pop()
        if dep.call in (get_session, get_readonly_session):
            return True
        stack.extend(dep.dependencies)
    return False


def _own_body(route: APIRoute, code: int) -> bool:
    """Whether the route declares its own body for ``code`` (e.g. /healthz's 503)."""
    declared = route.responses.get(code) or route.responses.get(str(code)) or {}
    return "content" in declared or "model" in declared


def _machinery_codes(route: APIRoute) -> list[int]:
    """The statuses any route of this form can answer, whatever its own code does."""
    dependant = route.dependant
    takes_input = bool(dependant.query_params or dependant.path_params or route.body_field)
    codes = []
    if _requires_sign_in(route):
        codes += [401, 403]
    if dependant.path_params:
        codes.append(404)
    if route.body_field is not None:
        codes += [408, 413]
    if takes_input:
        codes.append(422)
    if _requires_sign_in(route) or _uses_database(route):  # (signing in reads the database)
        codes.append(503)
    return codes


def openapi_document(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document with the error statuses and bodies the app really answers."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    _, defs = models_json_schema(
        [(ErrorOut, "serialization"), (ValidationErrorOut, "serialization")],
        ref_template=_SCHEMAS + "{model}",
    )
    schema.setdefault("components", {})["securitySchemes"] = SECURITY_SCHEMES
    components = schema["components"].setdefault("schemas", {})
    components.update(defs["$defs"])
    for name, adapter in _DOCUMENTED_BODIES.items():
        body = adapter.json_schema(ref_template=_SCHEMAS + "{model}")
        components.update(body.pop("$defs", {}))
        components[name] = body
    for name in ("HTTPValidationError", "ValidationError"):  # FastAPI's, never answered
        components.pop(name, None)
    for route in _flat_routes(app.routes):
        if not isinstance(route, APIRoute) or not route.include_in_schema:
            continue
        for method in route.methods or ():
            operation = schema["paths"].get(route.path_format, {}).get(method.lower())
            if operation is None:
                continue
            if _requires_sign_in(route):
                operation["security"] = [{"bearer": []}, {"session": []}]
            responses = operation.setdefault("responses", {})
            for code in _machinery_codes(route):
                responses.setdefault(str(code), {"description": DESCRIPTIONS[code]})
            for code, response in responses.items():
                if code.isdigit() and int(code) >= 400 and not _own_body(route, int(code)):
                    model = "ValidationErrorOut" if code == "422" else "ErrorOut"
                    ref = {"schema": {"$ref": _SCHEMAS + model}}
                    response["content"] = {"application/json": ref}
    app.openapi_schema = schema
    return schema
