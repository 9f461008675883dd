"""Accounts: login, CSRF, hashing at rest, tokens, throttling, bad input."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from app.models import ApiToken, User
from tests.conftest import TEST_PASSWORD, csrf_from, login


def test_login_sets_signed_httponly_samesite_cookie_and_logout_clears(client, make_user) -> None:
    user = make_user("labeler")
    page = client.get("/login")
    r = client.post(
        "/login",
        data={
            "username": user.username,
            "password": TEST_PASSWORD,
            "csrf_token": csrf_from(page.text),
        },
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"] == "/labeler"
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie
    assert client.get("/labeler").status_code == 200
    token = csrf_from(client.get("/labeler").text)
    assert (
        client.post("/logout", data={"csrf_token": token}, follow_redirects=False).status_code
        == 303
    )
    assert client.get("/labeler", follow_redirects=False).status_code == 303


def test_researcher_lands_on_admin_and_next_is_kept_but_never_offsite(client, make_user) -> None:
    user = make_user("researcher")
    token = csrf_from(client.get("/login").text)
    form = {"username": user.username, "password": TEST_PASSWORD, "csrf_token": token}
    r = client.post(
        "/login", data={**form, "next": "https://evil.example/"}, follow_redirects=False
    )
    assert r.headers["location"] == "/admin"
    token = csrf_from(client.get("/login").text)
    r = client.post(
        "/login", data={**form, "csrf_token": token, "next": "/labeler"}, follow_redirects=False
    )
    assert r.headers["location"] == "/labeler"


def test_wrong_password_shows_error_and_keeps_username(client, make_user) -> None:
    user = make_user("labeler")
    token = csrf_from(client.get("/login").text)
    r = client.post(
        "/login", data={"username": user.username, "password": "nope", "csrf_token": token}
    )
    assert r.status_code == 401
    assert "wrong username or password" in r.text
    assert f'value="{user.username}"' in r.text


def test_form_post_without_or_with_wrong_csrf_is_rejected(client, make_user) -> None:
    user = make_user("labeler")
    form = {"username": user.username, "password": TEST_PASSWORD}
    assert client.post("/login", data=form).status_code == 403
    client.get("/login")
    assert client.post("/login", data={**form, "csrf_token": "forged"}).status_code == 403
    login(client, user)
    # a logged-in session's JSON call needs the header too
    assert client.post("/logout").status_code == 403


def test_passwords_and_tokens_are_hashed_at_rest(session, make_user, make_token) -> None:
    user = make_user("researcher")
    secret = make_token(user)
    row = session.scalar(select(User).where(User.username == user.username))
    assert row.password_hash.startswith("$argon2id$")
    assert TEST_PASSWORD not in row.password_hash
    token = session.scalar(select(ApiToken).where(ApiToken.user_id == user.id))
    assert secret not in (token.token_hash, token.prefix) and len(token.token_hash) == 64
    assert secret.startswith(token.prefix)


def test_token_auth_last_used_and_revocation(client, make_user, make_token, session) -> None:
    from app.services.accounts import revoke_token

    user = make_user("researcher")
    secret = make_token(user)
    r = client.get("/api/v1/me", headers={"Authorization": f"Bearer {secret}"})
    assert r.status_code == 200
    assert r.json() == {
        "user_id": user.id,
        "username": user.username,
        "role": "researcher",
        "held_out": False,
        "status": "approved",
        "scopes": [],
        "auth": "token",
    }
    token = session.scalar(select(ApiToken).where(ApiToken.user_id == user.id))
    session.refresh(token)
    assert token.last_used_at is not None
    revoke_token(session, token.id)
    session.commit()
    r = client.get("/api/v1/me", headers={"Authorization": f"Bearer {secret}"})
    assert r.status_code == 401 and "revoked" in r.json()["detail"]


def test_malformed_tokens_get_401_not_500(client) -> None:
    for header in [
        "Bearer",
        "Bearer ",
        "Basic abc",
        "Bearer pfl_" + "x" * 500,
        "Bearer nope",
        "garbage",
    ]:
        r = client.get("/api/v1/me", headers={"Authorization": header})
        assert r.status_code == 401, header
        assert r.json()["detail"]


def test_scoped_token_reaches_only_its_scope(client, make_user, make_token) -> None:
    user = make_user("admin")
    secret = make_token(user, scopes=["ingest"])
    r = client.get("/api/v1/jobs", headers={"Authorization": f"Bearer {secret}"})
    assert r.status_code == 403 and "scope" in r.json()["detail"]


def test_me_tells_an_ingest_token_who_it_belongs_to_and_its_scope(
    client, make_user, make_token
) -> None:
    # before: 403 "this token's scope does not allow this endpoint"
    user = make_user("researcher")
    secret = make_token(user, scopes=["ingest"])
    r = client.get("/api/v1/me", headers={"Authorization": f"Bearer {secret}"})
    assert r.status_code == 200, r.text
    assert r.json() == {
        "user_id": user.id,
        "username": user.username,
        "role": "researcher",
        "held_out": False,
        "status": "approved",
        "scopes": ["ingest"],
        "auth": "token",
    }


@pytest.fixture
def low_login_limit(monkeypatch):
    """Fewer attempts before throttling, so the test does less (deliberately slow) hashing."""
    from app.config import get_settings

    monkeypatch.setenv("PREFLOOP_LOGIN_MAX_FAILURES", "2")
    # a delay far longer than the test, so "still throttled" never depends on timing
    monkeypatch.setenv("PREFLOOP_LOGIN_BASE_DELAY_S", "600")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_repeated_failed_logins_are_throttled_per_account(
    client, make_user, low_login_limit
) -> None:
    from app.config import get_settings

    user = make_user("labeler")
    limit = get_settings().login_max_failures
    for _ in range(limit):
        token = csrf_from(client.get("/login").text)
        r = client.post(
            "/login", data={"username": user.username, "password": "bad", "csrf_token": token}
        )
        assert r.status_code == 401
    token = csrf_from(client.get("/login").text)
    # even the right password is refused while throttled
    r = client.post(
        "/login", data={"username": user.username, "password": TEST_PASSWORD, "csrf_token": token}
    )
    assert r.status_code == 429 and "too many failed logins" in r.text


def test_failed_logins_are_throttled_per_ip_across_accounts(
    client, make_user, low_login_limit
) -> None:
    from app.config import get_settings

    victim = make_user("labeler")
    limit = 4 * get_settings().login_max_failures
    for i in range(limit):
        token = csrf_from(client.get("/login").text)
        client.post("/login", data={"username": f"guess{i}", "password": "x", "csrf_token": token})
    token = csrf_from(client.get("/login").text)
    r = client.post(
        "/login", data={"username": victim.username, "password": TEST_PASSWORD, "csrf_token": token}
    )
    assert r.status_code == 429


def test_generated_admin_must_change_password(client, session) -> None:
    from app.services.accounts import ensure_first_admin

    credentials = ensure_first_admin(session)
    session.commit()
    assert credentials is not None and ensure_first_admin(session) is None
    session.commit()  # on SQLite an open transaction holds the write lock
    username, password = credentials.split(":", 1)
    token = csrf_from(client.get("/login").text)
    r = client.post(
        "/login",
        data={"username": username, "password": password, "csrf_token": token},
        follow_redirects=False,
    )
    assert r.headers["location"] == "/account/password"
    page = client.get("/account/password")
    r = client.post(
        "/account/password",
        data={
            "current_password": password,
            "new_password": "short",
            "csrf_token": csrf_from(page.text),
        },
    )
    assert r.status_code == 422 and "at least 8" in r.text
    r = client.post(
        "/account/password",
        data={
            "current_password": password,
            "new_password": "a much better one",
            "csrf_token": csrf_from(page.text),
        },
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"] == "/admin"


def test_a_tokens_user_is_a_loaded_object_of_the_session(make_user, make_token, session) -> None:
    """The lookup reads the user through Core (issue 14) and hands back the session's own
    object, as a query would: unchanged until the caller changes it, its changes written on
    commit, the same object on a second lookup; a deactivated user's token finds no one."""
    from app.db import get_sessionmaker
    from app.services.accounts import user_for_token

    user = make_user("labeler")
    secret = make_token(user)
    found = user_for_token(session, secret)
    assert found is not None
    labeler, token = found
    assert labeler in session and labeler.id == user.id and labeler.username == user.username
    assert not session.dirty and not session.new
    assert token.scopes == ()
    assert user_for_token(session, secret)[0] is labeler  # type: ignore[index]
    labeler.held_out = True
    session.commit()
    with get_sessionmaker()() as other:
        assert other.get(User, user.id).held_out is True  # type: ignore[union-attr]
        other.get(User, user.id).is_active = False  # type: ignore[union-attr]
        other.commit()
    with get_sessionmaker()() as fresh:
        assert user_for_token(fresh, secret) is None
