"""Browser sessions end for real: a copied cookie dies with logout, a password change, a role
change, a deactivation or a reset; the secret key cannot be public; a generated password must
be changed before anything else."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from itsdangerous import TimestampSigner

from tests.conftest import TEST_PASSWORD, csrf_from, login

COOKIE = "prefloop_session"


def copy_of(client: TestClient) -> TestClient:
    """Another browser holding a copy of ``client``'s session cookie (a stolen cookie)."""
    thief = TestClient(client.app)
    thief.cookies.set(COOKIE, client.cookies[COOKIE])
    return thief


def signed_in(c: TestClient) -> bool:
    return c.get("/labeler", follow_redirects=False).status_code == 200


def test_a_copied_cookie_stops_working_after_logout(client, make_user) -> None:
    user = make_user("labeler")
    login(client, user)
    thief = copy_of(client)
    other_browser = login(TestClient(client.app), user)
    assert signed_in(thief)
    token = csrf_from(client.get("/labeler").text)
    assert client.post("/logout", data={"csrf_token": token}).status_code == 200
    # before: logout only cleared this browser's cookie and the copy went on working
    assert not signed_in(thief)
    assert not signed_in(other_browser)
    assert not signed_in(client)


def test_a_password_change_ends_the_other_sessions_but_not_this_one(client, make_user) -> None:
    user = make_user("labeler")
    login(client, user)
    thief = copy_of(login(TestClient(client.app), user))
    page = client.get("/account/password")
    r = client.post(
        "/account/password",
        data={
            "current_password": TEST_PASSWORD,
            "new_password": "a brand new passphrase",
            "csrf_token": csrf_from(page.text),
        },
        follow_redirects=False,
    )
    assert r.status_code == 303
    assert signed_in(client)
    assert not signed_in(thief)


def test_the_new_password_must_differ_from_the_old(client, make_user) -> None:
    user = make_user("labeler")
    login(client, user)
    page = client.get("/account/password")
    r = client.post(
        "/account/password",
        data={
            "current_password": TEST_PASSWORD,
            "new_password": TEST_PASSWORD,
            "csrf_token": csrf_from(page.text),
        },
    )
    assert r.status_code == 422 and "must differ" in r.text


@pytest.mark.parametrize(
    "change, args",
    [("set_active", (False,)), ("set_role", ("researcher",)), ("reset_password", ())],
)
def test_admin_changes_end_every_session_of_the_user(client, make_user, change, args) -> None:
    from app.db import get_sessionmaker
    from app.services import accounts

    user = make_user("labeler")
    make_user("admin")  # the last admin can be neither deactivated nor demoted
    login(client, user)
    thief = copy_of(client)
    assert signed_in(thief)
    with get_sessionmaker()() as s:
        getattr(accounts, change)(s, user.username, *args)
        s.commit()
    assert not signed_in(client)
    assert not signed_in(thief)


def test_a_generated_password_must_be_changed_before_anything_else(client, session) -> None:
    from app.services.accounts import create_user_with_password

    user, password = create_user_with_password(session, "newcomer", "admin")
    session.commit()
    token = csrf_from(client.get("/login").text)
    r = client.post(
        "/login",
        data={"username": "newcomer", "password": password, "csrf_token": token},
        follow_redirects=False,
    )
    assert r.headers["location"] == "/account/password"
    # before: the one-time password opened every admin page
    r = client.get("/admin/jobs", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/account/password"
    r = client.get("/api/v1/jobs")
    assert r.status_code == 403 and "change it at /account/password" in r.json()["detail"]
    assert client.get("/account/password").status_code == 200
    r = client.post(
        "/account/password",
        data={
            "current_password": password,
            "new_password": "my own passphrase",
            "csrf_token": csrf_from(client.get("/account/password").text),
        },
        follow_redirects=False,
    )
    assert r.status_code == 303
    assert client.get("/admin/jobs", follow_redirects=False).status_code == 200


def test_sessions_record_their_last_activity(client, make_user, session) -> None:
    from app.services.accounts import session_activity

    user = make_user("labeler")
    login(client, user)
    (info,) = session_activity(session, user.username)
    assert info.username == user.username and info.ip == "testclient"
    assert info.last_seen_at >= info.created_at


def test_a_cookie_forged_with_the_placeholder_key_cannot_start_a_server(
    app_env, monkeypatch
) -> None:
    from app.config import InsecureSecretKey, get_settings
    from app.main import create_app

    monkeypatch.setenv("PREFLOOP_SECRET_KEY", "change-me-to-a-long-random-string")
    get_settings.cache_clear()
    with pytest.raises(InsecureSecretKey, match="placeholder"):
        create_app()


def test_a_forged_cookie_with_a_user_id_is_not_a_session(client, make_user) -> None:
    # the old cookie format {"user_id": N}, signed with the real key: no longer a login
    import base64
    import json

    from tests.conftest import TEST_SECRET_KEY

    admin = make_user("admin")
    payload = base64.b64encode(json.dumps({"user_id": admin.id}).encode())
    forged = TimestampSigner(TEST_SECRET_KEY).sign(payload).decode()
    c = TestClient(client.app)
    c.cookies.set(COOKIE, forged)
    assert c.get("/admin", follow_redirects=False).status_code == 303
    assert c.get("/api/v1/me").status_code == 401


def test_serve_refuses_a_placeholder_or_short_secret(tmp_path) -> None:
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFLOOP_")}
    env["PREFLOOP_DATA_DIR"] = str(tmp_path)
    for secret in ("change-me-to-a-long-random-string", "short"):
        env["PREFLOOP_SECRET_KEY"] = secret
        result = subprocess.run(
            [sys.executable, "-m", "app.cli", "serve", "--no-worker", "--port", "1"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 2, result.stdout + result.stderr
        assert "refusing to start" in result.stderr


def test_a_signed_in_request_reads_its_session_and_its_user_in_one_statement(
    make_user,
) -> None:
    """Every page request of a signed-in browser looks its session up: the session's row and
    its user in one statement (two before: the user was loaded after the session)."""
    from sqlalchemy import event

    from app.db import get_engine, get_sessionmaker
    from app.models import User
    from app.services.sessions import start_session, user_for_session

    user = make_user("labeler")
    with get_sessionmaker()() as s:
        secret = start_session(s, s.get(User, user.id))  # type: ignore[arg-type]
        s.commit()
    seen: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany) -> None:
        seen.append(statement)

    engine = get_engine()
    event.listen(engine, "before_cursor_execute", record)
    try:
        with get_sessionmaker()() as s:
            found = user_for_session(s, secret)
            assert found is not None and found[0].id == user.id
            assert found[1].user is found[0]  # the relationship finds it loaded
    finally:
        event.remove(engine, "before_cursor_execute", record)
    reads = [x for x in seen if x.lstrip().upper().startswith("SELECT")]
    assert len(reads) == 1, reads
