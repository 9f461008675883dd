"""Shared fixtures: the app against a real database (SQLite and PostgreSQL), users, clients.

Every test that takes ``app_env`` (or a fixture built on it) runs once per database backend.
PostgreSQL and Redis tests skip with a reason when the service is down, unless
PREFLOOP_TEST_REQUIRE_SERVICES=1 (set by .ci/run), which turns the skip into a failure.
"""

from __future__ import annotations

import itertools
import os
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

PG_ADMIN_URL = os.environ.get(
    "PREFLOOP_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("PREFLOOP_TEST_REDIS_URL", "redis://127.0.0.1:6379/1")
REQUIRE_SERVICES = os.environ.get("PREFLOOP_TEST_REQUIRE_SERVICES") == "1"
TEST_PASSWORD = "correct horse battery"
# a session secret long enough for the server's check (32 bytes or more)
TEST_SECRET_KEY = "test-secret-key-0123456789abcdef0123456789"


def service_unavailable(what: str, error: Exception) -> None:
    message = f"{what} is not reachable ({type(error).__name__}: {error})"
    if REQUIRE_SERVICES:
        pytest.fail(message + " and PREFLOOP_TEST_REQUIRE_SERVICES=1", pytrace=False)
    pytest.skip(message)


def _reset_caches() -> None:
    from app.config import get_settings
    from app.db import get_engine, get_readonly_sessionmaker, get_sessionmaker
    from app.services import admin_figures, token_memory
    from app.services.queue import forget_drained_kinds
    from app.services.queue_upkeep import reset_scan_spacing

    admin_figures.clear()
    reset_scan_spacing()
    token_memory.forget_all()
    forget_drained_kinds()

    if get_sessionmaker.cache_info().currsize:
        get_engine().dispose()
    if get_readonly_sessionmaker.cache_info().currsize:
        bind = get_readonly_sessionmaker().kw["bind"]
        bind.dispose()
    get_settings.cache_clear()
    get_engine.cache_clear()
    get_sessionmaker.cache_clear()
    get_readonly_sessionmaker.cache_clear()


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("prefloop-data")


@pytest.fixture(scope="session")
def sqlite_url(data_dir: Path) -> str:
    from app.migrate import upgrade_to_head

    url = f"sqlite:///{data_dir / 'test.sqlite'}"
    upgrade_to_head(url)
    return url


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session (dropped at the end)."""
    from app.migrate import upgrade_to_head

    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"prefloop_test_{os.getpid()}_{secrets.token_hex(3)}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        admin.dispose()
        service_unavailable("PostgreSQL", exc)
    url = make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    upgrade_to_head(url)
    yield url
    _reset_caches()
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest) -> str:
    return request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")


def truncate_all(url: str) -> None:
    from app.db import Base

    engine = create_engine(url)
    tables = [t.name for t in Base.metadata.sorted_tables]
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        else:
            conn.execute(text("PRAGMA foreign_keys=OFF"))
            for table in reversed(tables):
                conn.execute(text(f"DELETE FROM {table}"))
            conn.execute(text("DELETE FROM sqlite_sequence")) if conn.execute(
                text("SELECT 1 FROM sqlite_master WHERE name='sqlite_sequence'")
            ).first() else None
    engine.dispose()


def seed_defaults() -> None:
    """The default data every installation has before its first request (``prefloop serve``
    seeds it at bootstrap): the use-case categories."""
    from app.db import get_sessionmaker
    from app.services.use_cases import ensure_default_use_cases

    with get_sessionmaker()() as s:
        ensure_default_use_cases(s)
        s.commit()


def configure_env(monkeypatch: pytest.MonkeyPatch, data_dir: Path, url: str, **extra: str) -> None:
    monkeypatch.setenv("PREFLOOP_DATA_DIR", str(data_dir))
    monkeypatch.setenv("PREFLOOP_DATABASE_URL", url)
    monkeypatch.setenv("PREFLOOP_SECRET_KEY", TEST_SECRET_KEY)
    monkeypatch.setenv("PREFLOOP_BROKER_URL", f"sqla+sqlite:///{data_dir / 'broker.sqlite'}")
    # the admin pages' figures fresh on every view (their cache is tested on its own)
    monkeypatch.setenv("PREFLOOP_ADMIN_FIGURES_TTL_S", "0")
    for key, value in extra.items():
        monkeypatch.setenv(f"PREFLOOP_{key.upper()}", value)
    _reset_caches()
    seed_defaults()


@pytest.fixture
def app_env(db_url: str, data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Settings pointing at the test database, with the default data seeded; every table is
    emptied after the test."""
    configure_env(monkeypatch, data_dir, db_url)
    yield db_url
    _reset_caches()
    truncate_all(db_url)


@pytest.fixture
def session(app_env: str) -> Iterator[Session]:
    from app.db import get_sessionmaker

    with get_sessionmaker()() as s:
        yield s


@pytest.fixture
def client(app_env: str) -> Iterator[TestClient]:
    from app.main import create_app

    with TestClient(create_app()) as c:
        yield c


@dataclass
class TestUser:
    id: int
    username: str
    role: str
    password: str = TEST_PASSWORD


_counter = itertools.count()


@pytest.fixture
def make_user(app_env: str) -> Callable[..., TestUser]:
    """Create a user in the database: ``make_user("researcher", held_out=False)``."""
    from app.db import get_sessionmaker
    from app.services.accounts import create_user

    def factory(
        role: str = "labeler", username: str | None = None, held_out: bool = False
    ) -> TestUser:
        username = username or f"{role}{next(_counter)}"
        with get_sessionmaker()() as s:
            user = create_user(s, username, TEST_PASSWORD, role)
            user.held_out = held_out
            s.commit()
            return TestUser(user.id, username, role)

    return factory


@pytest.fixture
def make_token(app_env: str) -> Callable[..., str]:
    """A bearer token for a user: ``make_token(user, scopes=["ingest"])``."""
    from app.db import get_sessionmaker
    from app.services.accounts import create_token

    def factory(user: TestUser, scopes: list[str] | None = None) -> str:
        with get_sessionmaker()() as s:
            _, secret = create_token(s, user.username, "test", scopes)
            s.commit()
            return secret

    return factory


@pytest.fixture
def api_as(client: TestClient, make_user, make_token) -> Callable[..., TestClient]:
    """A JSON client authenticated by a token of a new user of ``role``."""
    from app.main import create_app

    def factory(role: str = "researcher", user: TestUser | None = None) -> TestClient:
        user = user or make_user(role)
        c = TestClient(create_app())
        c.headers["Authorization"] = f"Bearer {make_token(user)}"
        c.user = user  # type: ignore[attr-defined]
        return c

    return factory


def login(client: TestClient, user: TestUser) -> TestClient:
    """Log ``client`` in through the login form (with its CSRF token)."""
    page = client.get("/login")
    token = csrf_from(page.text)
    r = client.post(
        "/login",
        data={"username": user.username, "password": user.password, "csrf_token": token},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    return client


def csrf_from(html: str) -> str:
    import re

    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no CSRF field on the page"
    return match.group(1)


@pytest.fixture
def browser_login(client: TestClient) -> Callable[[TestUser], TestClient]:
    return lambda user: login(client, user)


@pytest.fixture(scope="session")
def redis_url() -> str:
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except Exception as exc:
        service_unavailable("Redis", exc)
    return REDIS_URL
