"""The request's session dependency (``app.db.get_session``, async since issue 14): a route's
error rolls its writes back, and every request gives its connection back to the pool."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import func, select


def _pool_checked_out() -> int:
    from app.db import get_engine

    return get_engine().pool.checkedout()  # type: ignore[attr-defined]


async def _run(fail: bool, commit: bool) -> None:
    from app.db import get_session
    from app.models import Prompt

    dependency = get_session()
    session = await anext(dependency)
    session.add(Prompt(text="written in a request", source="api", user_id="c1", status="accepted"))
    session.flush()  # a transaction is open and holds a connection
    if commit:
        session.commit()
    if fail:
        with pytest.raises(RuntimeError):
            await dependency.athrow(RuntimeError("the route failed"))
    else:
        with pytest.raises(StopAsyncIteration):
            await anext(dependency)
    assert not session.in_transaction()


def _prompts() -> int:
    from app.db import get_sessionmaker
    from app.models import Prompt

    with get_sessionmaker()() as s:
        return s.scalar(select(func.count()).select_from(Prompt)) or 0


def test_a_failing_route_stores_nothing_and_gives_the_connection_back(app_env) -> None:
    asyncio.run(_run(fail=True, commit=False))
    assert _prompts() == 0
    assert _pool_checked_out() == 0


def test_an_uncommitted_route_stores_nothing_and_gives_the_connection_back(app_env) -> None:
    asyncio.run(_run(fail=False, commit=False))
    assert _prompts() == 0
    assert _pool_checked_out() == 0


def test_a_committed_route_keeps_its_writes(app_env) -> None:
    asyncio.run(_run(fail=False, commit=True))
    assert _prompts() == 1
    assert _pool_checked_out() == 0
