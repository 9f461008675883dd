"""Object-level access: every route with an id in its path, called by a user who does not own
or hold that object, gets 403/404 and learns nothing about it.

The routes come from the app itself: a new route with an id fails
``test_every_route_with_an_id_has_a_case`` until it is given a case here, either

- ``Shared(role)``: the objects belong to the team of that role (jobs, models, snapshots, use
  cases, split pins for researchers; users and tokens for admins). Anyone below the role gets
  the same 403 for an object that exists and for one that does not; or
- ``Held``: a labeler's task or prompt. Another labeler (who never held it) gets 403/404, the
  answer carries none of the object's text, and nothing changes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.models import Role
from tests.conftest import csrf_from, login
from tests.labeling_support import make_prompt, make_ranking_task
from tests.unit.test_roles import iter_api_routes, minimum_role


@dataclass(frozen=True)
class Shared:
    role: Role


@dataclass(frozen=True)
class Held:
    """The object is the task (``task``) or the prompt (``prompt``) a labeler holds."""

    object: str


RESEARCHERS, ADMINS = Shared(Role.researcher), Shared(Role.admin)
CASES: dict[str, Shared | Held] = {
    "GET /api/v1/export/snapshots/{snapshot_id}": RESEARCHERS,
    "GET /api/v1/export/snapshots/{snapshot_id}/download": RESEARCHERS,
    "GET /api/v1/jobs/{job_id}": RESEARCHERS,
    "GET /api/v1/jobs/{job_id}/metrics": RESEARCHERS,
    "POST /api/v1/jobs/{job_id}/cancel": RESEARCHERS,
    "POST /api/v1/jobs/{job_id}/rerun": RESEARCHERS,
    "POST /api/v1/models/{model_version_id}/current": RESEARCHERS,
    "GET /admin/jobs/{job_id}": RESEARCHERS,
    "GET /admin/jobs/{job_id}/live": RESEARCHERS,
    "POST /admin/jobs/{job_id}/cancel": RESEARCHERS,
    "POST /admin/jobs/{job_id}/rerun": RESEARCHERS,
    "POST /api/v1/jobs/{job_id}/release": RESEARCHERS,
    "POST /api/v1/jobs/{job_id}/discard": RESEARCHERS,
    "POST /admin/jobs/{job_id}/release": RESEARCHERS,
    "POST /admin/jobs/{job_id}/discard": RESEARCHERS,
    "GET /admin/browse/{view}": RESEARCHERS,
    "GET /admin/browse/prompts/{prompt_id}": RESEARCHERS,
    "POST /admin/models/{model_version_id}/current": RESEARCHERS,
    "GET /api/v1/prompts/{prompt_id}": RESEARCHERS,
    "PATCH /api/v1/use-cases/{use_case_id}": RESEARCHERS,
    "PUT /api/v1/split-pins/{user_id}": RESEARCHERS,
    "DELETE /api/v1/split-pins/{user_id}": RESEARCHERS,
    "POST /admin/data/use-cases/{use_case_id}": RESEARCHERS,
    "POST /admin/data/pins/{user_id}/delete": RESEARCHERS,
    "GET /api/v1/evaluations/{evaluation_id}": RESEARCHERS,
    "GET /admin/evaluations/{evaluation_id}": RESEARCHERS,
    "PUT /api/v1/gold-tasks/{task_id}": RESEARCHERS,
    "GET /admin/gold/tasks/{task_id}": RESEARCHERS,
    "POST /admin/gold/tasks/{task_id}": RESEARCHERS,
    "GET /api/v1/labelers/{labeler_id}": RESEARCHERS,
    "POST /api/v1/labelers/{labeler_id}/approve": RESEARCHERS,
    "POST /api/v1/labelers/{labeler_id}/reject": RESEARCHERS,
    "PUT /api/v1/labelers/{labeler_id}/group": RESEARCHERS,
    "GET /admin/labelers/{labeler_id}": RESEARCHERS,
    "POST /admin/labelers/{labeler_id}/decision": RESEARCHERS,
    "GET /admin/users/{user_id}": ADMINS,
    "POST /admin/users/{user_id}/role": ADMINS,
    "POST /admin/users/{user_id}/active": ADMINS,
    "POST /admin/users/{user_id}/held-out": ADMINS,
    "POST /admin/users/{user_id}/password": ADMINS,
    "POST /admin/users/{user_id}/sessions/end": ADMINS,
    "POST /admin/users/{user_id}/tokens": ADMINS,
    "POST /admin/users/{user_id}/tokens/{token_id}/revoke": ADMINS,
    "PUT /api/v1/prompts/{prompt_id}/use-case": Held("prompt"),
    "POST /api/v1/tasks/{task_id}/submission": Held("task"),
    "PUT /api/v1/tasks/{task_id}/submission": Held("task"),
    "GET /labeler/work/{task_id}": Held("task"),
    "POST /labeler/work/{task_id}": Held("task"),
    "GET /labeler/tasks/{task_id}": Held("task"),
    "POST /labeler/tasks/{task_id}": Held("task"),
    "POST /labeler/tasks/{task_id}/skip": Held("task"),
    "POST /labeler/tasks/{task_id}/use-case": Held("task"),
}
BELOW = {Role.researcher: "labeler", Role.admin: "researcher"}
SECRET = "Describe the secret garden of customer 4711"


def routes_with_ids() -> list[tuple[str, str]]:
    found = []
    for route in iter_api_routes(create_app().routes):
        if "{" in route.path:
            for method in sorted((route.methods or set()) - {"HEAD"}):
                found.append((method, route.path))
    return found


def test_every_route_with_an_id_has_a_case() -> None:
    routes = {f"{m} {p}" for m, p in routes_with_ids()}
    missing = sorted(routes - CASES.keys())
    assert not missing, f"routes with an id and no object-access case in this file: {missing}"
    stale = sorted(CASES.keys() - routes)
    assert not stale, f"cases for routes that no longer exist: {stale}"
    for method, path in routes_with_ids():
        case = CASES[f"{method} {path}"]
        if isinstance(case, Shared):
            # the route really is closed to everyone below the team's role
            route = next(
                r
                for r in iter_api_routes(create_app().routes)
                if r.path == path and method in (r.methods or set())
            )
            assert minimum_role(route) == case.role, (method, path)


def _fill(path: str, ids: dict[str, str]) -> str:
    default = ids.get("*", "1")
    return re.sub(r"\{([^}]+)\}", lambda m: ids.get(m.group(1), default), path)


def _as(client: TestClient, user, api: bool, make_token) -> tuple[TestClient, dict[str, str]]:
    c = TestClient(client.app)
    if api:
        c.headers["Authorization"] = f"Bearer {make_token(user)}"
        return c, {}
    login(c, user)
    return c, {"csrf_token": csrf_from(c.get("/login").text)}


def _call(c: TestClient, method: str, url: str, form: dict[str, str]):
    if url.startswith("/api/"):
        if url.endswith("/use-case"):
            body: dict[str, object] = {"use_case": "Generation"}
        elif method == "PUT":  # an edit: a skip cannot be edited, a text can be
            body = {"text": "an edited demonstration"}
        else:
            body = {"skip": {"reason": "unclear"}}
        return c.request(method, url, json=body if method != "GET" else None)
    data = {**form, "use_case": "Generation", "reason": "unclear"} if method != "GET" else None
    return c.request(method, url, data=data, follow_redirects=False)


def test_shared_objects_are_closed_to_lower_roles_alike(client, make_user, make_token) -> None:
    make_user("labeler", username="bystander")  # user 1 exists
    prompt_id = make_prompt(SECRET)  # a prompt exists
    existing = {"user_id": "1", "labeler_id": "1", "prompt_id": str(prompt_id)}
    missing = {"*": "2147483647"}  # every id: one that does not exist
    callers = {role: _as(client, make_user(role), False, make_token) for role in BELOW.values()}
    tokens = {role: _as(client, make_user(role), True, make_token) for role in BELOW.values()}
    checked = 0
    for method, path in routes_with_ids():
        case = CASES[f"{method} {path}"]
        if not isinstance(case, Shared):
            continue
        who = BELOW[case.role]
        c, form = (tokens if path.startswith("/api/") else callers)[who]
        answers = [_call(c, method, _fill(path, ids), form) for ids in (existing, missing)]
        for r in answers:
            assert r.status_code == 403, (who, method, path, r.status_code)
            assert SECRET not in r.text
        # nothing to tell an object that exists from one that does not
        assert answers[0].text == answers[1].text, (method, path)
        checked += 1
    assert checked >= 20


@pytest.fixture
def held_by_someone_else(client, make_user):
    """A ranking task and its prompt (with a recognisable text), held by labeler A."""
    owner = make_user("labeler")
    prompt_id = make_prompt(SECRET)
    task_id, _ = make_ranking_task(
        prompt_id, [f"{SECRET}: output {i}" for i in range(4)], overlap=1
    )
    from app.db import get_sessionmaker
    from app.models import User
    from app.services.queue import assign_next_task

    with get_sessionmaker()() as s:
        assignment = assign_next_task(s, s.get_one(User, owner.id), "ranking")
        s.commit()
        assert assignment is not None and assignment.task_id == task_id
    return {"task_id": str(task_id), "prompt_id": str(prompt_id), "owner": owner}


def test_a_labeler_cannot_reach_another_labelers_task_or_prompt(
    client, make_user, make_token, held_by_someone_else, session
) -> None:
    from app.models import Prompt

    stranger = make_user("labeler")
    browser, form = _as(client, stranger, False, make_token)
    api, _ = _as(client, stranger, True, make_token)
    checked = 0
    for method, path in routes_with_ids():
        case = CASES[f"{method} {path}"]
        if not isinstance(case, Held):
            continue
        url = _fill(path, held_by_someone_else)
        r = _call(api if path.startswith("/api/") else browser, method, url, form)
        # before: PUT /api/v1/prompts/{id}/use-case answered 200 with the whole stored row
        assert r.status_code in (403, 404), (method, url, r.status_code, r.text[:200])
        assert SECRET not in r.text, (method, url)
        checked += 1
    assert checked == sum(isinstance(c, Held) for c in CASES.values())
    session.expire_all()
    prompt = session.get(Prompt, int(held_by_someone_else["prompt_id"]))
    assert prompt is not None and prompt.use_case is None  # nothing changed


def test_the_holder_and_researchers_may_categorise(
    client, make_user, make_token, held_by_someone_else
) -> None:
    holder, _ = _as(client, held_by_someone_else["owner"], True, make_token)
    prompt_id = held_by_someone_else["prompt_id"]
    r = holder.put(f"/api/v1/prompts/{prompt_id}/use-case", json={"use_case": "Rewrite"})
    assert r.status_code == 200 and r.json()["use_case"] == "Rewrite"
    researcher, _ = _as(client, make_user("researcher"), True, make_token)
    r = researcher.put(f"/api/v1/prompts/{prompt_id}/use-case", json={"use_case": "Generation"})
    assert r.status_code == 200
    # only what the task page shows: no text, user ID, external ID or metadata
    assert r.json() == {"prompt_id": int(prompt_id), "use_case": "Generation"}
