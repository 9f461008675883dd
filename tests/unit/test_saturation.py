"""A saturated database is not an error: requests that find no free connection in time answer
503 with Retry-After (JSON under /api/, a page elsewhere), never 500, and nothing is lost."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from app.models import Prompt
from tests.conftest import configure_env, login


@pytest.fixture
def tiny_pool(app_env: str, data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """One connection per process, and a short wait for it (on SQLite the writers' wait,
    30 s in the app: three requests waited 90 s of this test's run for it)."""
    import app.db

    monkeypatch.setattr(app.db, "SQLITE_WRITER_WAIT_S", 0.3)
    configure_env(
        monkeypatch,
        data_dir,
        app_env,
        db_pool_size="1",
        db_max_overflow="0",
        db_pool_timeout_s="0.3",
        db_retry_after_s="3",
    )
    return app_env


def test_a_saturated_pool_answers_503_with_retry_after_and_loses_nothing(
    tiny_pool, make_user, make_token
) -> None:
    from app.db import get_engine, get_sessionmaker
    from app.main import create_app

    researcher = make_user("researcher")
    api = TestClient(create_app())
    api.headers["Authorization"] = f"Bearer {make_token(researcher)}"
    page = login(TestClient(create_app()), make_user("labeler"))
    body = {
        "prompts": [
            {"text": "Describe a lighthouse at night.", "external_id": "p1", "user_id": "c1"}
        ]
    }

    held = get_engine().connect()  # another request holds the only connection
    try:
        r = api.post("/api/v1/prompts", json=body)
        assert r.status_code == 503, r.text
        assert r.headers["Retry-After"] == "3"
        assert "retry" in r.json()["detail"]
        r = api.get("/api/v1/tasks/next")
        assert r.status_code == 503 and r.headers["Retry-After"] == "3"
        r = page.get("/labeler")
        assert r.status_code == 503 and r.headers["Retry-After"] == "3"
        assert r.headers["content-type"].startswith("text/html")
    finally:
        held.close()

    # the client retries as told: the prompt is stored once, nothing half-done before it
    with get_sessionmaker()() as s:
        assert s.scalar(select(func.count()).select_from(Prompt)) == 0
    r = api.post("/api/v1/prompts", json=body)
    assert r.status_code == 200, r.text
    assert r.json()["results"][0]["status"] == "accepted"
    with get_sessionmaker()() as s:
        assert s.scalar(select(func.count()).select_from(Prompt)) == 1


class _PgError(Exception):
    def __init__(self, message: str, sqlstate: str | None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


@pytest.mark.parametrize(
    ("message", "sqlstate", "busy"),
    [
        ("FATAL:  sorry, too many clients already", "53300", True),
        ("FATAL:  remaining connection slots are reserved", None, True),
        ("no more connections allowed (max_client_conn)", None, True),
        ("database is locked", None, True),
        ('relation "prompts" does not exist', "42P01", False),
    ],
)
def test_saturation_is_told_apart_from_real_errors(message, sqlstate, busy) -> None:
    from app.db import is_saturation

    exc = OperationalError("SELECT 1", {}, _PgError(message, sqlstate))
    assert is_saturation(exc) is busy


def test_requests_past_the_pools_size_wait_their_turn_then_answer_503(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The gate in front of the app (issue 14): no more requests run at once than the pool has
    connections; the next waits first come first served, and past ``db_pool_timeout_s`` it is
    answered 503 with Retry-After without reaching the app."""
    import anyio

    from app.config import get_settings
    from app.middleware import DatabaseBusy

    monkeypatch.setenv("PREFLOOP_DB_POOL_SIZE", "1")
    monkeypatch.setenv("PREFLOOP_DB_MAX_OVERFLOW", "0")
    monkeypatch.setenv("PREFLOOP_DB_POOL_TIMEOUT_S", "0.2")
    monkeypatch.setenv("PREFLOOP_DB_RETRY_AFTER_S", "3")
    get_settings.cache_clear()
    entered: list[str] = []
    release = anyio.Event()

    async def app(scope, receive, send) -> None:
        entered.append(scope["path"])
        if scope["path"] == "/api/v1/slow":
            await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    gate = DatabaseBusy(app)
    answers: dict[str, tuple[int, dict[bytes, bytes]]] = {}

    async def call(path: str) -> None:
        scope = {"type": "http", "path": path, "headers": [], "method": "GET"}

        async def receive():
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message) -> None:
            if message["type"] == "http.response.start":
                answers[path] = (message["status"], dict(message["headers"]))

        await gate(scope, receive, send)

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(call, "/api/v1/slow")
            await anyio.wait_all_tasks_blocked()
            await call("/api/v1/waits")  # the only slot is taken until it gives up
            release.set()
        await call("/api/v1/after")  # the slot is free again

    try:
        anyio.run(main)
    finally:
        get_settings.cache_clear()
    assert entered == ["/api/v1/slow", "/api/v1/after"]
    assert answers["/api/v1/slow"][0] == 200 and answers["/api/v1/after"][0] == 200
    status, headers = answers["/api/v1/waits"]
    assert status == 503 and headers[b"retry-after"] == b"3"
