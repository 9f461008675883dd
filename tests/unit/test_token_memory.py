"""A web process remembers the bearer tokens it looked up (PostgreSQL), and every change that
matters reaches the next request at once: revocation, deletion, deactivation, a new role or
status, made anywhere (here: by SQL on a connection of its own, as another process would)."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest
from sqlalchemy import create_engine, event, text

from app.db import get_engine, utcnow
from app.services import token_memory
from app.services.accounts import hash_token


@pytest.fixture
def pg_only(app_env: str) -> str:
    if app_env.startswith("sqlite"):
        pytest.skip("the memory is PostgreSQL's (users.xmin)")
    return app_env


def elsewhere(url: str, statement: str, **params: object) -> None:
    """``statement`` committed on a connection of its own: another process's change."""
    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(text(statement), params)
    finally:
        engine.dispose()


def remembered(secret: str) -> token_memory.Remembered | None:
    return token_memory.recall(hash_token(secret))


def me(client, secret: str):
    return client.get("/api/v1/me", headers={"Authorization": f"Bearer {secret}"})


def test_a_looked_up_token_is_remembered_and_serves_the_next_requests(
    pg_only, client, make_user, make_token
) -> None:
    user = make_user("labeler")
    secret = make_token(user)
    assert remembered(secret) is None
    assert me(client, secret).json()["username"] == user.username
    assert remembered(secret) is not None
    lookups: list[str] = []

    def lookup_seen(conn, cursor, statement, parameters, context, executemany) -> None:
        if "FROM api_tokens" in statement:
            lookups.append(statement)

    engine = get_engine()
    event.listen(engine, "before_cursor_execute", lookup_seen)
    try:
        for _ in range(3):
            assert me(client, secret).json()["role"] == "labeler"
        r = client.get("/api/v1/tasks/next", headers={"Authorization": f"Bearer {secret}"})
        assert r.status_code == 204
    finally:
        event.remove(engine, "before_cursor_execute", lookup_seen)
    assert lookups == []  # each request only checked the token (on psycopg's own cursor)


def test_a_made_up_token_is_never_remembered(pg_only, client) -> None:
    for secret in ["pfl_madeup", "pfl_" + "x" * 43]:
        assert me(client, secret).status_code == 401
        assert remembered(secret) is None


@pytest.mark.parametrize(
    ("change", "status", "expected"),
    [
        ("UPDATE api_tokens SET revoked_at = now()", 401, "revoked"),
        ("DELETE FROM api_tokens", 401, "revoked"),
        ("UPDATE users SET is_active = false", 401, "revoked"),
        ("UPDATE users SET role = 'researcher'", 200, "researcher"),
        ("UPDATE users SET labeler_status = 'rejected'", 200, "rejected"),
        # the row changes, nothing the answer shows: served after a lookup, the same answer
        ("UPDATE users SET last_login_at = now()", 200, "labeler"),
    ],
)
def test_a_change_made_elsewhere_reaches_the_next_request(
    pg_only, client, make_user, make_token, change: str, status: int, expected: str
) -> None:
    user = make_user("labeler")
    secret = make_token(user)
    assert me(client, secret).status_code == 200
    assert remembered(secret) is not None
    elsewhere(pg_only, change)
    r = me(client, secret)
    assert r.status_code == status
    assert expected in r.text
    if status == 401:
        assert remembered(secret) is None
    else:  # looked up again, and remembered as it is now
        again = remembered(secret)
        assert again is not None and again.user_values["role"] == r.json()["role"]


def test_a_revoked_token_is_refused_on_the_labeling_hot_path(
    pg_only, client, make_user, make_token
) -> None:
    user = make_user("labeler")
    secret = make_token(user)
    auth = {"Authorization": f"Bearer {secret}"}
    assert client.get("/api/v1/tasks/next", headers=auth).status_code == 204
    assert remembered(secret) is not None
    elsewhere(pg_only, "UPDATE api_tokens SET revoked_at = now()")
    assert client.get("/api/v1/tasks/next", headers=auth).status_code == 401
    r = client.post("/api/v1/tasks/1/submission", headers=auth, json={"text": "an answer"})
    assert r.status_code == 401


def test_the_last_use_is_still_written_once_a_minute(
    pg_only, client, make_user, make_token
) -> None:
    user = make_user("labeler")
    secret = make_token(user)
    assert me(client, secret).status_code == 200
    found = remembered(secret)
    assert found is not None and found.until > utcnow() + timedelta(seconds=50)
    # a minute later (the memory's entry has run out; the last use is that old)
    two_minutes_ago = utcnow() - timedelta(minutes=2)
    elsewhere(pg_only, "UPDATE api_tokens SET last_used_at = :t", t=two_minutes_ago)
    token_memory.remember(hash_token(secret), _ended(found))
    assert me(client, secret).status_code == 200
    engine = create_engine(pg_only)
    try:
        with engine.connect() as connection:
            last_used = connection.execute(text("SELECT last_used_at FROM api_tokens")).scalar()
    finally:
        engine.dispose()
    assert last_used is not None and last_used > utcnow() - timedelta(seconds=30)
    refreshed = remembered(secret)
    assert refreshed is not None and refreshed.until > utcnow() + timedelta(seconds=50)


def _ended(found: token_memory.Remembered) -> token_memory.Remembered:
    return dataclasses.replace(found, until=utcnow() - timedelta(seconds=1))


def test_the_memory_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(token_memory, "REMEMBERED_MAX", 2)
    token_memory.forget_all()
    later = utcnow() + timedelta(minutes=1)
    for name in ["a", "b", "c"]:
        token_memory.remember(name, token_memory.Remembered({}, 1, (), "1", later))
    assert token_memory.recall("a") is None
    assert token_memory.recall("b") is not None and token_memory.recall("c") is not None
    token_memory.forget_all()


def test_nothing_is_remembered_on_sqlite(app_env: str, client, make_user, make_token) -> None:
    if not app_env.startswith("sqlite"):
        pytest.skip("the embedded default")
    secret = make_token(make_user("labeler"))
    assert me(client, secret).status_code == 200
    assert remembered(secret) is None
