"""The labeling hot path's database work on the event loop itself (``app.db.on_the_loop``,
issue 14): on SQLite with its writers taking turns on one connection (one web process, the
embedded default) it runs there, and the loop never waits, neither for the connection a worker
thread holds nor for another process's write lock: the request waits without holding up the
loop and tries again when the connection comes back. On PostgreSQL it always runs in a
thread."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable

import anyio
import pytest
from sqlalchemy import text

# how long a test's holder of the lock waits for the event loop to say it went on; were the
# loop waiting behind the holder, it could not say so before this passed (the test then fails)
LOOP_SAYS_S = 10.0


def _on_sqlite(app_env: str) -> None:
    if not app_env.startswith("sqlite"):
        pytest.skip("PostgreSQL's work always runs in a thread")


def _work(ran_in: list[int]) -> Callable[[], int]:
    """A transaction that writes (``ran_in`` gets the thread of each attempt, the one on the
    loop included)."""
    from app.db import get_sessionmaker

    def work() -> int:
        ran_in.append(threading.get_ident())
        with get_sessionmaker()() as session:
            session.execute(text("CREATE TEMP TABLE IF NOT EXISTS touched (n INTEGER)"))
            session.execute(text("INSERT INTO touched VALUES (1)"))
            session.commit()
        return threading.get_ident()

    return work


def test_work_runs_on_the_loop_only_on_sqlite(app_env: str) -> None:
    from app.db import on_the_loop

    ran_in: list[int] = []

    async def main() -> tuple[int, int]:
        return threading.get_ident(), await on_the_loop(_work(ran_in))

    loop_thread, finished_in = anyio.run(main)
    assert (finished_in == loop_thread) == app_env.startswith("sqlite")
    assert ran_in == [finished_in]  # one attempt


def _loop_goes_on_while(
    hold: Callable[[threading.Event, threading.Event, list[bool]], None],
) -> tuple[int, list[int], list[bool]]:
    """``hold(held, loop_went_on, said)`` runs in a thread and holds something the work needs
    from ``held`` on until ``loop_went_on`` (appending to ``said`` whether it came in time);
    the work starts on the loop meanwhile. The loop's thread, the work's attempts' threads, and
    what the holder said."""
    from app.db import on_the_loop

    held, loop_went_on = threading.Event(), threading.Event()
    said: list[bool] = []
    ran_in: list[int] = []

    async def main() -> int:
        holder = threading.Thread(target=hold, args=(held, loop_went_on, said))
        holder.start()
        assert await anyio.to_thread.run_sync(held.wait, LOOP_SAYS_S), "the holder failed"
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(on_the_loop, _work(ran_in))
            await anyio.sleep(0.05)  # returns only if the work does not hold up the loop
            loop_went_on.set()
        await anyio.to_thread.run_sync(holder.join)
        return threading.get_ident()

    return anyio.run(main), ran_in, said


def test_the_loop_goes_on_while_a_thread_holds_the_connection(app_env: str) -> None:
    """A route in a worker thread holds the process's one connection: the work meets it in
    use, waits without holding up the loop, and runs when the connection comes back."""
    _on_sqlite(app_env)
    from app.db import get_sessionmaker

    def hold(held: threading.Event, loop_went_on: threading.Event, said: list[bool]) -> None:
        with get_sessionmaker()() as session:
            session.execute(text("SELECT 1"))  # the connection, and SQLite's write lock
            held.set()
            said.append(loop_went_on.wait(LOOP_SAYS_S))
            session.commit()

    loop_thread, ran_in, said = _loop_goes_on_while(hold)
    assert said == [True]
    # each attempt stopped at its first statement until the connection came back; the last
    # did the work, on the loop too
    assert len(ran_in) >= 2 and set(ran_in) == {loop_thread}


def test_another_process_holding_the_write_lock_does_not_stop_the_loop(app_env: str) -> None:
    """Another process (here another connection to the same file) holds SQLite's write lock:
    the work's BEGIN on the loop gives up at once instead of waiting out SQLite's busy
    timeout there, and tries again, and the connection's busy timeout is 30 s again after."""
    _on_sqlite(app_env)
    from app.db import SQLITE_WRITER_WAIT_S, get_engine

    path = get_engine().url.database
    assert path

    def hold(held: threading.Event, loop_went_on: threading.Event, said: list[bool]) -> None:
        other = sqlite3.connect(path, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            held.set()
            said.append(loop_went_on.wait(LOOP_SAYS_S))
            other.execute("COMMIT")
        finally:
            other.close()

    loop_thread, ran_in, said = _loop_goes_on_while(hold)
    assert said == [True]
    # tried again every WRITER_RETRY_S until the other process committed
    assert len(ran_in) >= 2 and set(ran_in) == {loop_thread}
    with get_engine().connect() as conn:
        waits_ms = conn.exec_driver_sql("PRAGMA busy_timeout").scalar()
    assert waits_ms == SQLITE_WRITER_WAIT_S * 1000


def test_no_turn_within_the_writers_wait_is_a_saturation(
    app_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past ``SQLITE_WRITER_WAIT_S`` without the connection, the request gets the pool's
    timeout, as a worker thread would: a saturation (503 with Retry-After), nothing written."""
    _on_sqlite(app_env)
    import app.db
    from app.db import get_sessionmaker, is_saturation, on_the_loop

    monkeypatch.setattr(app.db, "SQLITE_WRITER_WAIT_S", 0.2)
    held, done = threading.Event(), threading.Event()

    def hold() -> None:
        with get_sessionmaker()() as session:
            session.execute(text("SELECT 1"))
            held.set()
            done.wait(LOOP_SAYS_S)
            session.rollback()

    ran_in: list[int] = []

    async def main() -> BaseException:
        holder = threading.Thread(target=hold)
        holder.start()
        assert await anyio.to_thread.run_sync(held.wait, LOOP_SAYS_S), "the holder failed"
        try:
            await on_the_loop(_work(ran_in))
        except Exception as exc:  # noqa: BLE001 - what the request would meet
            return exc
        finally:
            done.set()
            await anyio.to_thread.run_sync(holder.join)
        raise AssertionError("the work ran while the connection was held")

    error = anyio.run(main)
    assert is_saturation(error), error
    assert len(ran_in) >= 2  # tried again meanwhile


def test_a_worker_thread_waiting_for_the_connection_goes_first(app_env: str) -> None:
    """The loop takes the connection back within microseconds of each piece of work: while a
    worker thread waits for it (another route, the periodic jobs), the loop's next work lets
    the thread go first. Before, beside ten labelers, a health check waited up to a second."""
    _on_sqlite(app_env)
    from app.db import get_engine, on_the_loop

    done_on_loop = 0
    seen: dict[str, int] = {}
    started, stop = threading.Event(), threading.Event()

    def thread_route() -> None:
        started.wait(LOOP_SAYS_S)
        seen["asked"] = done_on_loop
        with get_engine().connect() as conn:  # waits in the pool, as a route's session does
            seen["got"] = done_on_loop
            conn.exec_driver_sql("SELECT 1")
        stop.set()

    async def main() -> None:
        nonlocal done_on_loop
        route = threading.Thread(target=thread_route)
        route.start()
        work = _work([])
        while not stop.is_set() and done_on_loop < 5000:
            await on_the_loop(work)
            done_on_loop += 1
            if done_on_loop == 20:
                started.set()
            await anyio.sleep(0)
        await anyio.to_thread.run_sync(route.join)

    anyio.run(main)
    assert "got" in seen, "the thread never got the connection"
    assert seen["got"] - seen["asked"] <= 3, seen  # the work under way, and one more at most
