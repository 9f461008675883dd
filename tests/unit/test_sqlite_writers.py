"""SQLite's writers in one process take turns on one connection, queued in the pool before
SQLite's lock (issue 14): SQLite's busy handler polls in sleeps of up to 100 ms, so writers
slept while the database was free, and a connection drops its page cache whenever another one
has written. These tests turn SQLite's busy timeout off, so a writer that meets another's lock
in SQLite fails at once: queued, it never meets it there."""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, event, text

# how long the first writer keeps its transaction open for the second to try to begin
HOLD_S = 2.0


@pytest.fixture
def engine_for(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """``engine_for(queue=True)``: an app engine on a new SQLite file, with SQLite's own busy
    timeout off, and a table ``t`` with one counter row."""
    from app.config import get_settings
    from app.db import make_engine

    made: list[Engine] = []

    def factory(*, queue: bool, read_only: bool = False) -> Engine:
        monkeypatch.setenv("PREFLOOP_SQLITE_WRITER_QUEUE", "true" if queue else "false")
        get_settings.cache_clear()
        # the read-only engine reads the file of the last engine made
        name = f"writers{len(made) - 1 if read_only else len(made)}.sqlite"
        engine = make_engine(f"sqlite:///{tmp_path / name}", read_only=read_only)
        made.append(engine)

        @event.listens_for(engine, "connect")
        def _no_busy_wait(dbapi_conn: object, _record: object) -> None:
            dbapi_conn.execute("PRAGMA busy_timeout=0")  # type: ignore[attr-defined]

        if not read_only:
            with engine.begin() as conn:
                conn.execute(text("CREATE TABLE t (n INTEGER NOT NULL)"))
                conn.execute(text("INSERT INTO t VALUES (0)"))
        return engine

    yield factory
    for engine in made:
        engine.dispose()
    get_settings.cache_clear()


def _two_writers(engine: Engine) -> list[BaseException]:
    """The first thread writes and keeps its transaction open until the second has tried to
    write too (or ``HOLD_S`` passed: queued, the second waits for the first's commit and cannot
    say it tried); both add 1 to the counter. The errors the threads met."""
    first_inside, second_tried = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def first() -> None:
        try:
            with engine.begin() as conn:
                conn.execute(text("UPDATE t SET n = n + 1"))
                first_inside.set()
                second_tried.wait(HOLD_S)
        except BaseException as exc:
            errors.append(exc)
            first_inside.set()

    def second() -> None:
        first_inside.wait()
        try:
            with engine.begin() as conn:
                conn.execute(text("UPDATE t SET n = n + 1"))
        except BaseException as exc:
            errors.append(exc)
        finally:
            second_tried.set()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def test_a_writer_waits_for_another_in_the_queue_not_in_sqlite(engine_for) -> None:
    engine = engine_for(queue=True)
    assert _two_writers(engine) == []
    with engine.connect() as conn:
        assert conn.scalar(text("SELECT n FROM t")) == 2


def test_without_the_queue_the_second_writer_meets_sqlites_lock(engine_for) -> None:
    """The contrast that shows the test above can fail: the same two writers, no queue."""
    engine = engine_for(queue=False)
    errors = _two_writers(engine)
    assert len(errors) == 1 and "database is locked" in str(errors[0]), errors


def test_a_transaction_given_back_unfinished_frees_the_queue(engine_for, monkeypatch) -> None:
    """A connection closed in the middle of its transaction (an error that invalidated it, a
    session dropped without closing) must not keep every later writer of the process out."""
    import app.db

    monkeypatch.setattr(app.db, "SQLITE_WRITER_WAIT_S", 1.0)
    engine = engine_for(queue=True)
    conn = engine.connect()
    conn.begin()
    conn.execute(text("UPDATE t SET n = n + 1"))
    conn.invalidate()  # closed under its open transaction: SQLite rolls it back
    conn.close()
    leaked = engine.connect()
    leaked.begin()
    leaked.execute(text("UPDATE t SET n = n + 10"))
    del leaked  # never committed, rolled back or closed: the pool takes it back when collected
    gc.collect()
    with engine.begin() as fresh:  # waits at most 1 s for the connection, then a saturation
        fresh.execute(text("UPDATE t SET n = n + 100"))
    with engine.connect() as check:
        assert check.scalar(text("SELECT n FROM t")) == 100


def _write_while_reading(reader: Engine, writer: Engine) -> list[BaseException]:
    """A transaction on ``reader`` that only reads stays open while ``writer`` (another
    connection) writes: the errors the writer met."""
    errors: list[BaseException] = []
    with reader.connect() as conn, conn.begin():
        assert conn.scalar(text("SELECT n FROM t")) == 0
        try:
            with writer.begin() as other:
                other.execute(text("UPDATE t SET n = n + 1"))
        except BaseException as exc:
            errors.append(exc)
    return errors


def test_a_read_write_transaction_holds_the_write_lock_from_its_begin(engine_for) -> None:
    """BEGIN IMMEDIATE: a transaction that has only read so far already keeps other writers
    out (what keeps the task queue's read-then-write correct); a read-only engine's does not."""
    engine = engine_for(queue=False)
    errors = _write_while_reading(engine, engine)
    assert len(errors) == 1 and "database is locked" in str(errors[0]), errors
    assert _write_while_reading(engine_for(queue=False, read_only=True), engine) == []


def test_a_writer_that_waits_too_long_in_the_queue_is_told_the_database_is_busy(
    engine_for, monkeypatch
) -> None:
    """The queue's wait ends as SQLite's does: with an error the app answers with 503 and
    Retry-After (``is_saturation``: the pool's timeout), and the waiting transaction wrote
    nothing."""
    import app.db
    from app.db import is_saturation

    monkeypatch.setattr(app.db, "SQLITE_WRITER_WAIT_S", 0.2)
    engine = engine_for(queue=True)
    errors = _write_while_reading(engine, engine)
    assert len(errors) == 1 and is_saturation(errors[0]), errors
    with engine.connect() as conn:
        assert conn.scalar(text("SELECT n FROM t")) == 0


def test_writers_of_one_process_share_one_connection(engine_for) -> None:
    """One connection keeps SQLite's page cache: SQLite drops a connection's whole cache when
    another connection has written since its last transaction, so writers taking turns on a
    pool of connections each read again every page they touched (60 reads of the file a
    labeling cycle at ten labelers). Several threads' transactions, one after another, all ran
    on the same sqlite3 connection; a read-only engine keeps a pool (its reads run side by
    side)."""
    engine = engine_for(queue=True)
    seen: set[int] = set()
    together = threading.Barrier(8)

    def write() -> None:
        together.wait()  # all at once: each waits for the others' turns
        with engine.begin() as conn:
            seen.add(id(conn.connection.dbapi_connection))
            conn.execute(text("UPDATE t SET n = n + 1"))
            time.sleep(0.02)

    threads = [threading.Thread(target=write) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(seen) == 1
    with engine.connect() as conn:
        assert conn.scalar(text("SELECT n FROM t")) == 8
    reader = engine_for(queue=True, read_only=True)
    with reader.connect() as first, reader.connect() as second:
        assert first.scalar(text("SELECT n FROM t")) == second.scalar(text("SELECT n FROM t"))


def test_statements_run_no_engine_events(engine_for) -> None:
    """The app's engines listen to no connection events: SQLAlchemy then skips the statement
    events (before/after execute, before/after cursor execute) for every statement it runs.
    On SQLite a "begin" listener issued BEGIN IMMEDIATE: with it, a labeling cycle ran 6.8%
    more instructions (issue 14). ``_has_events`` is the flag SQLAlchemy reads before each
    statement. A PostgreSQL engine is made without connecting: its idle ping listens to the
    pool only."""
    from app.db import make_engine

    postgres = make_engine("postgresql+psycopg://nobody@127.0.0.1:9/never_connected")
    for engine in (engine_for(queue=True), engine_for(queue=False, read_only=True), postgres):
        assert engine._has_events is False
    postgres.dispose()
