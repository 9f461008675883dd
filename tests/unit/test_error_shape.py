"""One 422 shape across every router: ``{"detail", "field", "errors"}``.

The routes come from the app itself. Each route that takes input gets one invalid request,
chosen from what it takes (an id that is not a number, a JSON body that is not an object, a
form without its required fields, a query value of the wrong type); routes whose input is all
free text get a case in ``QUERIES``. The test fails for a router none of whose routes was
checked, and for a route with input that has no case.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.params import Form
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from app.main import ROUTERS
from tests.unit.test_roles import iter_api_routes

# routes whose query parameters are all strings that the service checks: a value it refuses
QUERIES = {
    "GET /api/v1/export/comparisons": ("format=nope", "format"),
    "GET /api/v1/export/demonstrations": ("output=nope", "output"),
    "GET /api/v1/export/prompts": ("split=nope", "split"),
    "GET /api/v1/export/evaluations": ("output=nope", "output"),
    "GET /api/v1/tasks/next": ("kind=nope", "kind"),
    "GET /api/v1/quality/agreement": ("group=nope", "group"),
    "GET /api/v1/labelers/stats": ("since=nope", "since"),
    "DELETE /api/v1/split-pins/{user_id}": ("client=" + "c" * 65, "client"),
    "GET /api/v1/models": ("kind=nope", "kind"),
    "GET /admin/instructions": ("saved=maybe", "saved"),
    "GET /admin/quality": ("desc=maybe", "desc"),
    "GET /labeler/next": ("kind=nope", "kind"),
}
# routes with input no value of which is invalid (free text, all optional): why each is here
NO_INVALID_INPUT = {
    "GET /login": "next is any text (one leading off the site is ignored)",
    "POST /login": "empty fields are a failed login: 401 and the form again",
    "POST /account/password": "a page form: what is wrong is shown beside it (an HTML 422)",
    "POST /admin/data/pins/{user_id}/delete": "any text names a pin; an unknown one is a 404",
    "GET /admin/jobs/new": "a page per kind: an unknown kind is a 404",
    "POST /admin/jobs/new": "a page per kind: an unknown kind is a 404",
    "GET /admin/browse/{view}": "a page per view: an unknown view is a 404",
    "GET /labeler/prompts/new": "an unknown kind shows the plain prompt form",
    "POST /admin/instructions": "a page form: an empty text is shown beside it (an HTML 422)",
    "POST /admin/instructions/preview": "any Markdown previews, the empty text too",
    "POST /admin/users": "a page form: what is wrong is shown beside it (an HTML 422)",
}


def _is_int(annotation: Any) -> bool:
    return annotation is int or "int" in str(annotation)


def _form_fields(route: APIRoute) -> list[str]:
    body = route.body_field
    if body is None or not isinstance(body.field_info, Form):
        return []
    return [f.alias for f in route.dependant.body_params if f.field_info.is_required()]


def _invalid_request(route: APIRoute, method: str) -> dict[str, Any] | None:
    """One request this route must refuse with a 422, and the field it must name."""
    key = f"{method} {route.path}"
    int_params = [p for p in route.dependant.path_params if _is_int(p.field_info.annotation)]
    url = re.sub(r"\{[^}]+\}", "1", route.path)
    if int_params:
        name = int_params[0].alias
        return {"url": route.path.replace("{" + name + "}", "x").replace("{", "").replace("}", ""),
                "field": name}  # fmt: skip
    if key in QUERIES:
        query, field = QUERIES[key]
        return {"url": f"{url}?{query}", "field": field}
    if route.body_field is not None:
        required = _form_fields(route)
        if required:
            return {"url": url, "data": {"unrelated": "x"}, "field": required[0]}
        if not isinstance(route.body_field.field_info, Form):
            return {"url": url, "json": "not an object", "field": None}
    typed = [p for p in route.dependant.query_params if _is_int(p.field_info.annotation)]
    if typed:
        return {"url": f"{url}?{typed[0].alias}=x", "field": typed[0].alias}
    return None


def _takes_input(route: APIRoute) -> bool:
    d = route.dependant
    return bool(d.path_params or d.query_params or route.body_field)


def _assert_shape(r: Any, field: str | None, where: str) -> None:
    assert r.status_code == 422, (where, r.status_code, r.text[:200])
    assert r.headers["content-type"] == "application/json", (where, r.text[:200])
    body = r.json()
    assert set(body) == {"detail", "field", "errors"}, (where, body)
    assert isinstance(body["detail"], str) and body["detail"], (where, body)
    assert body["field"] is None or isinstance(body["field"], str), (where, body)
    if field is not None:
        assert body["field"] == field and field in body["detail"], (where, body)
    assert body["errors"] and all({"loc", "msg", "type"} <= set(e) for e in body["errors"])


def test_every_router_answers_one_422_shape(client, make_user, make_token) -> None:
    admin = TestClient(client.app)
    admin.headers["Authorization"] = f"Bearer {make_token(make_user('admin'))}"
    admin.headers["Accept"] = "application/json"
    checked_routers: set[int] = set()
    missing, wrong = [], []
    for router in ROUTERS:
        for route in iter_api_routes(router.routes):
            for method in sorted((route.methods or set()) - {"HEAD"}):
                key = f"{method} {route.path}"
                case = _invalid_request(route, method)
                if case is None:
                    if _takes_input(route) and key not in NO_INVALID_INPUT:
                        missing.append(key)
                    continue
                field = case.pop("field")
                r = admin.request(method, case.pop("url"), follow_redirects=False, **case)
                try:
                    _assert_shape(r, field, key)
                except AssertionError as exc:
                    wrong.append(str(exc))
                checked_routers.add(id(router))
    assert not missing, f"routes with input but no invalid case: {missing}"
    assert not wrong, "\n".join(wrong)
    unchecked = [r for r in ROUTERS if id(r) not in checked_routers and _router_takes_input(r)]
    assert not unchecked, [[route.path for route in iter_api_routes(r.routes)] for r in unchecked]


def _router_takes_input(router: Any) -> bool:
    """Some route of the router takes input that can be invalid."""
    return any(
        _takes_input(route) and f"{method} {route.path}" not in NO_INVALID_INPUT
        for route in iter_api_routes(router.routes)
        for method in (route.methods or set()) - {"HEAD"}
    )


@pytest.mark.parametrize(
    ("content", "field", "message"),
    [
        (b"{nope", "body", "not valid JSON"),
        (b"\xff\xfe{}", "body", "not valid JSON"),
        (b'{"a":' * 5000 + b"1" + b"}" * 5000, "body", "nested too deeply"),
    ],
)
def test_unreadable_json_bodies_are_the_same_422(api_as, content, field, message) -> None:
    api = api_as("admin")
    for path in ("/api/v1/prompts", "/api/v1/completions", "/api/v1/jobs"):
        r = api.post(path, content=content, headers={"Content-Type": "application/json"})
        _assert_shape(r, field, path)
        assert message in r.json()["detail"]


def test_a_rule_422_and_a_schema_422_look_alike(api_as) -> None:
    api = api_as("admin")
    # a schema error: every problem listed, the first one named
    r = api.post("/api/v1/completions", json={"prompt_id": "x", "completions": "y"})
    _assert_shape(r, "prompt_id", "schema")
    assert [e["loc"] for e in r.json()["errors"]] == [
        ["body", "prompt_id"],
        ["body", "completions"],
    ]
    # a rule in a service: the same shape, its one error located at the field
    r = api.post("/api/v1/completions", json={"prompt_id": 999999, "completions": []})
    assert r.status_code in (404, 422), r.text
    r = api.get("/api/v1/export/prompts?since=2026-02-01&until=2026-01-01")
    _assert_shape(r, "since", "rule")
    assert r.json()["errors"][0]["loc"] == ["since"]


def test_405_allows_every_method_of_the_path(api_as) -> None:
    """Two routes share a path (POST and PUT a submission): a 405 lists both, not the first."""
    api = api_as("admin")
    r = api.delete("/api/v1/tasks/1/submission")
    assert r.status_code == 405 and r.headers["allow"] == "POST, PUT", r.headers
    r = api.patch("/api/v1/use-cases")
    assert r.status_code == 405 and r.headers["allow"] == "GET, POST", r.headers
