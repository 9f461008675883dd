"""User management: the admin page /admin/users and `prefloop users|tokens`, over the same
service functions."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from app.cli import cli
from app.models import User
from tests.conftest import csrf_from, login

runner = CliRunner()


def post(c: TestClient, url: str, **data: str):
    token = csrf_from(c.get("/admin/users").text)
    return c.post(url, data={"csrf_token": token, **data}, follow_redirects=False)


def secret_on(html: str) -> str:
    match = re.search(r'<code class="secret">([^<]+)</code>', html)
    assert match, "no one-time secret on the page"
    return match.group(1)


def test_admin_creates_a_user_with_a_one_time_password(client, make_user) -> None:
    login(client, make_user("admin"))
    r = post(client, "/admin/users", username="new-labeler", role="labeler")
    assert r.status_code == 201 and r.headers["cache-control"] == "no-store"
    password = secret_on(r.text)
    assert "no-store" in r.headers["cache-control"]
    # the listing never shows it again
    assert password not in client.get("/admin/users").text
    newcomer = TestClient(client.app)
    token = csrf_from(newcomer.get("/login").text)
    r = newcomer.post(
        "/login",
        data={"username": "new-labeler", "password": password, "csrf_token": token},
        follow_redirects=False,
    )
    assert r.headers["location"] == "/account/password"
    again = post(client, "/admin/users", username="new-labeler", role="labeler")
    assert again.status_code == 409 and "already exists" in again.text
    bad = post(client, "/admin/users", username="x", role="boss")
    assert bad.status_code == 422 and "unknown role" in bad.text


def test_admin_manages_one_user(client, make_user, session) -> None:
    login(client, make_user("admin"))
    target = make_user("labeler")
    victim_browser = login(TestClient(client.app), target)
    page = client.get(f"/admin/users/{target.id}")
    assert page.status_code == 200 and "Last activity" in page.text  # the live session
    base = f"/admin/users/{target.id}"

    assert post(client, f"{base}/held-out", held_out="on").status_code == 303
    assert post(client, f"{base}/role", role="researcher").status_code == 303
    assert victim_browser.get("/labeler", follow_redirects=False).status_code == 303
    r = post(client, f"{base}/tokens", name="laptop", scope="ingest")
    secret = secret_on(r.text)
    me = TestClient(client.app).get("/api/v1/me", headers={"Authorization": f"Bearer {secret}"})
    assert me.json()["scopes"] == ["ingest"]
    revoke = re.search(rf"{base}/tokens/(\d+)/revoke", r.text)
    assert revoke is not None
    token_id = revoke.group(1)
    assert post(client, f"{base}/tokens/{token_id}/revoke").status_code == 303
    me = TestClient(client.app).get("/api/v1/me", headers={"Authorization": f"Bearer {secret}"})
    assert me.status_code == 401
    password = secret_on(post(client, f"{base}/password").text)
    assert post(client, f"{base}/active", active="off").status_code == 303
    session.expire_all()
    user = session.scalar(select(User).where(User.id == target.id))
    assert (user.role, user.held_out, user.is_active, user.must_change_password) == (
        "researcher",
        True,
        False,
        True,
    )
    session.commit()
    refused = TestClient(client.app)
    token = csrf_from(refused.get("/login").text)
    r = refused.post(
        "/login", data={"username": target.username, "password": password, "csrf_token": token}
    )
    assert r.status_code == 401
    assert post(client, f"{base}/active", active="on").status_code == 303
    assert client.get("/admin/users/999999").status_code == 404


def test_the_last_admin_stays(client, make_user) -> None:
    me = make_user("admin")
    login(client, me)
    r = post(client, f"/admin/users/{me.id}/active", active="off")
    assert r.status_code == 409 and "last active admin" in r.text
    r = post(client, f"/admin/users/{me.id}/role", role="labeler")
    assert r.status_code == 409 and "last active admin" in r.text


def test_a_token_of_another_user_cannot_be_revoked_through_this_one(
    client, make_user, session
) -> None:
    from app.models import ApiToken
    from app.services.accounts import create_token

    login(client, make_user("admin"))
    alice, bob = make_user("labeler"), make_user("labeler")
    token, _ = create_token(session, bob.username, "bob's")
    session.commit()
    r = post(client, f"/admin/users/{alice.id}/tokens/{token.id}/revoke")
    assert r.status_code == 404
    session.expire_all()
    assert session.get(ApiToken, token.id).revoked_at is None


def test_researchers_do_not_manage_users(client, make_user) -> None:
    login(client, make_user("researcher"))
    assert client.get("/admin/users").status_code == 403
    assert "/admin/users" not in client.get("/admin").text


def invoke(*args: str, input: str | None = None):
    return runner.invoke(cli, list(args), input=input)


def test_cli_user_management(app_env, make_user, client, session) -> None:
    make_user("admin")
    user = make_user("labeler")
    browser = login(TestClient(client.app), user)
    listing = invoke("users", "sessions", user.username)
    assert listing.exit_code == 0 and user.username in listing.output
    assert invoke("users", "logout", user.username).output.strip().endswith("ended 1 session(s)")
    assert browser.get("/labeler", follow_redirects=False).status_code == 303
    assert invoke("users", "role", user.username, "researcher").exit_code == 0
    bad_role = invoke("users", "role", user.username, "boss")
    assert bad_role.exit_code == 2 and "unknown role" in bad_role.output
    reset = invoke("users", "reset-password", user.username)
    password = reset.output.strip()
    assert reset.exit_code == 0 and len(password) >= 12
    assert invoke("users", "deactivate", user.username).exit_code == 0
    assert "deactivated" in invoke("users", "list").output
    assert invoke("users", "reactivate", user.username).exit_code == 0
    created = invoke("users", "create", "carol", "--one-time-password")
    assert created.exit_code == 0 and "one-time password" in created.output
    missing = invoke("users", "deactivate", "nobody")
    assert missing.exit_code == 1 and "no user 'nobody'" in missing.output
    for command in ("deactivate", "reactivate", "role", "reset-password", "sessions", "logout"):
        assert invoke("users", command, "--help").exit_code == 0
