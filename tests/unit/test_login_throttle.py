"""Login throttling: per (account, address) and per address with growing delays, forwarded
headers only from trusted proxies, and an attempt count that holds under concurrency."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from app.db import utcnow
from app.models import LoginThrottle
from tests.conftest import TEST_PASSWORD, csrf_from

LIMIT = 2


@pytest.fixture
def throttling(monkeypatch):
    """A small limit (less deliberately slow hashing) and a delay far longer than the test."""
    from app.config import get_settings

    monkeypatch.setenv("PREFLOOP_LOGIN_MAX_FAILURES", str(LIMIT))
    monkeypatch.setenv("PREFLOOP_LOGIN_BASE_DELAY_S", "600")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def browser(client: TestClient, address: str = "203.0.113.7") -> TestClient:
    return TestClient(client.app, client=(address, 40000))


def attempt(c: TestClient, username: str, password: str, **headers: str):
    token = csrf_from(c.get("/login").text)
    return c.post(
        "/login",
        data={"username": username, "password": password, "csrf_token": token},
        headers=headers,
        follow_redirects=False,
    )


def test_a_strangers_guesses_do_not_lock_the_owner_out(client, make_user, throttling) -> None:
    user = make_user("admin")
    attacker = browser(client, "198.51.100.66")
    for _ in range(LIMIT):
        assert attempt(attacker, user.username, "guess").status_code == 401
    r = attempt(attacker, user.username, TEST_PASSWORD)
    assert r.status_code == 429 and "too many failed logins" in r.text
    assert int(r.headers["Retry-After"]) > 0
    # before: the account itself was locked, whoever asked
    owner = browser(client, "203.0.113.7")
    assert attempt(owner, user.username, TEST_PASSWORD).status_code == 303


def test_an_address_is_throttled_across_accounts(client, make_user, throttling) -> None:
    victim = make_user("labeler")
    sprayer = browser(client, "198.51.100.66")
    for i in range(4 * LIMIT):
        assert attempt(sprayer, f"guess{i}", "x").status_code == 401
    assert attempt(sprayer, victim.username, TEST_PASSWORD).status_code == 429
    assert attempt(browser(client), victim.username, TEST_PASSWORD).status_code == 303


def test_delays_grow_after_the_free_attempts(
    client, make_user, throttling, session, monkeypatch
) -> None:
    from app.config import get_settings

    monkeypatch.setenv("PREFLOOP_LOGIN_BASE_DELAY_S", "60")
    monkeypatch.setenv("PREFLOOP_LOGIN_MAX_DELAY_S", "100000")
    get_settings.cache_clear()
    user = make_user("labeler")
    c = browser(client)
    for _ in range(LIMIT):
        attempt(c, user.username, "guess")
    waits = []
    for _ in range(3):
        r = attempt(c, user.username, "guess")
        assert r.status_code == 429
        waits.append(int(r.headers["Retry-After"]))
        # let the delay pass (end every counter's delay instead of sleeping)
        session.execute(update(LoginThrottle).values(blocked_until=utcnow() - timedelta(seconds=1)))
        session.commit()
        assert attempt(c, user.username, "guess").status_code == 401
    assert waits[0] <= 60 and waits[1] > waits[0] * 1.5 and waits[2] > waits[1] * 1.5


def test_a_success_clears_the_accounts_counter(client, make_user, throttling, session) -> None:
    user = make_user("labeler")
    c = browser(client)
    attempt(c, user.username, "typo")
    assert attempt(c, user.username, TEST_PASSWORD).status_code == 303
    rows = session.scalars(select(LoginThrottle).where(LoginThrottle.username == user.username))
    assert list(rows) == []


def test_forwarded_for_is_ignored_unless_the_peer_is_a_trusted_proxy(
    client, make_user, throttling, monkeypatch
) -> None:
    from app.config import get_settings

    user = make_user("labeler")
    c = browser(client, "127.0.0.1")
    # before: a local client chose its address with the header (uvicorn trusted 127.0.0.1),
    # so every guess came "from" a fresh address
    for i in range(LIMIT):
        attempt(c, user.username, "guess", **{"X-Forwarded-For": f"192.0.2.{i}"})
    r = attempt(c, user.username, TEST_PASSWORD, **{"X-Forwarded-For": "192.0.2.99"})
    assert r.status_code == 429

    # behind a trusted proxy, the address the proxy saw is the client's: two users behind
    # it are throttled separately
    monkeypatch.setenv("PREFLOOP_TRUSTED_PROXIES", "10.0.0.0/8")
    get_settings.cache_clear()
    proxy = browser(client, "10.1.2.3")
    for _ in range(LIMIT):
        attempt(proxy, user.username, "guess", **{"X-Forwarded-For": "192.0.2.10, 10.9.9.9"})
    blocked = attempt(proxy, user.username, TEST_PASSWORD, **{"X-Forwarded-For": "192.0.2.10"})
    assert blocked.status_code == 429
    ok = attempt(proxy, user.username, TEST_PASSWORD, **{"X-Forwarded-For": "192.0.2.20"})
    assert ok.status_code == 303


def test_serve_trusts_forwarded_headers_only_from_configured_proxies(monkeypatch) -> None:
    from app.cli import uvicorn_options
    from app.config import get_settings

    monkeypatch.delenv("PREFLOOP_TRUSTED_PROXIES", raising=False)
    get_settings.cache_clear()
    assert uvicorn_options()["proxy_headers"] is False
    monkeypatch.setenv("PREFLOOP_TRUSTED_PROXIES", "10.0.0.1")
    get_settings.cache_clear()
    options = uvicorn_options()
    assert options["proxy_headers"] is True and options["forwarded_allow_ips"] == ["10.0.0.1"]
    get_settings.cache_clear()


def test_concurrent_attempts_never_exceed_the_limit(make_user, throttling) -> None:
    """20 simultaneous guesses: exactly LIMIT reach the password check, on both databases."""
    from app.db import get_sessionmaker
    from app.services import ServiceError
    from app.services.accounts import authenticate

    user = make_user("labeler")
    outcomes: list[int] = []
    lock = threading.Lock()
    start = threading.Barrier(20)

    def guess() -> None:
        start.wait()
        with get_sessionmaker()() as s:
            try:
                authenticate(s, user.username, "wrong", "198.51.100.1")
                code = 200
            except ServiceError as exc:
                code = exc.status_code
        with lock:
            outcomes.append(code)

    threads = [threading.Thread(target=guess) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    # before: each attempt counted recent failures, then verified, then recorded: all 20 saw
    # fewer than LIMIT failures and all were checked
    assert sorted(outcomes) == [401] * LIMIT + [429] * (20 - LIMIT)
