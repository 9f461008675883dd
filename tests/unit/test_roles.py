"""The role matrix: every route, called as anonymous / labeler / researcher / admin."""

from __future__ import annotations

import re

import pytest
from fastapi.routing import APIRoute

from app.main import create_app
from app.models import Role, role_at_least
from tests.conftest import csrf_from, login

# routes anyone may call
PUBLIC = {"/login", "/healthz", "/", "/logout", "/favicon.ico"}
# the API description: any signed-in user, or anyone with PREFLOOP_PUBLIC_API_DOCS=true
DOCS = {"/docs", "/openapi.json"}
ROLES = ["anonymous", "labeler", "researcher", "admin"]


def minimum_role(route: APIRoute) -> Role | None:
    """The role a route requires, read from its ``require_role`` dependency."""
    stack = [route.dependant]
    while stack:
        dep = stack.pop()
        if dep.call is not None and hasattr(dep.call, "minimum_role"):
            return dep.call.minimum_role
        stack.extend(dep.dependencies)
    return None


def iter_api_routes(routes: list) -> list[APIRoute]:
    """Every APIRoute, also those inside included routers (kept nested by newer FastAPI)."""
    found: list[APIRoute] = []
    for route in routes:
        if isinstance(route, APIRoute):
            found.append(route)
        elif hasattr(route, "original_router"):
            found.extend(iter_api_routes(route.original_router.routes))
    return found


def all_routes() -> list[tuple[str, str, Role | None]]:
    out = []
    for route in iter_api_routes(create_app().routes):
        if True:
            for method in sorted((route.methods or set()) - {"HEAD"}):
                out.append((method, route.path, minimum_role(route)))
    return out


def concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "1", path)


def test_every_route_is_public_or_requires_a_role() -> None:
    unprotected = [(m, p) for m, p, role in all_routes() if role is None and p not in PUBLIC | DOCS]
    assert not unprotected, f"routes without a role dependency: {unprotected}"


def test_role_matrix(client, make_user, make_token) -> None:
    from fastapi.testclient import TestClient

    # user 1, the target of every "/admin/users/1/..." call (deactivate, reset password...),
    # is a bystander, so the calls do not sign out the users the matrix is played by
    make_user("labeler", username="bystander")
    users = {role: make_user(role) for role in ROLES[1:]}
    tokens = {role: make_token(user) for role, user in users.items()}
    # one browser session per role (logging in is slow on purpose: Argon2)
    browsers = {"anonymous": TestClient(client.app)}
    for role, user in users.items():
        browsers[role] = login(TestClient(client.app), user)
    csrf = {who: csrf_from(c.get("/login").text) for who, c in browsers.items()}
    checked = 0
    for method, path, minimum in all_routes():
        if minimum is None:
            continue
        url = concrete(path)
        is_api = path.startswith("/api/")
        for who in ROLES:
            headers: dict[str, str] = {}
            data = None
            if is_api:
                c = TestClient(client.app)
                if who != "anonymous":
                    headers["Authorization"] = f"Bearer {tokens[who]}"
            else:
                c = browsers[who]
                if method != "GET":
                    data = {"csrf_token": csrf[who]}  # a real form post carries the token
            r = c.request(method, url, headers=headers, data=data, follow_redirects=False)
            where = f"{who} {method} {url} -> {r.status_code}"
            if who == "anonymous":
                if is_api:
                    assert r.status_code == 401, where
                else:
                    assert r.status_code == 303 and "/login" in r.headers["location"], where
            elif role_at_least(who, minimum):
                # a 403 here may only be about the resource (e.g. a task assigned to someone
                # else), never about the role
                assert r.status_code != 401 and r.status_code < 500, where
                assert not (r.status_code == 403 and "requires the" in r.text), where
            else:
                assert r.status_code == 403 and "requires the" in r.text, where
            checked += 1
    assert checked >= 4 * 3


@pytest.mark.parametrize("path", ["/admin", "/api/v1/me", "/docs", "/openapi.json"])
def test_anonymous_reaches_only_login_and_health(client, path) -> None:
    assert client.get("/login").status_code == 200
    assert client.get("/healthz").status_code == 200
    r = client.get(path, follow_redirects=False)
    assert r.status_code in (303, 401)


def test_page_urls_with_impossible_ids_are_404_pages(client, make_user) -> None:
    """Every HTML page with an id in its URL takes the API's bounded ids: a number past 32 bits
    (a 500 on PostgreSQL's INTEGER once) or not a number names no page."""
    admin = login(client, make_user("admin"))
    pages = [
        (route, method)
        for route in iter_api_routes(create_app().routes)
        if not route.path.startswith("/api/") and "{" in route.path
        for method in sorted((route.methods or set()) - {"HEAD"})
    ]
    assert pages
    csrf = csrf_from(admin.get("/login").text)
    for route, method in pages:
        for bad in (str(2**63), "-" + str(2**40), "x"):
            url = re.sub(r"\{[^}]+\}", bad, route.path)
            r = admin.request(method, url, data={"csrf_token": csrf} if method == "POST" else None)
            assert r.status_code == 404, (method, url, r.status_code, r.text[:200])
            assert "text/html" in r.headers["content-type"]
