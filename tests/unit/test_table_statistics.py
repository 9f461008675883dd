"""On a PostgreSQL server without autovacuum the periodic sweep analyzes the tables that
changed, so prepared statements' plans follow the data (issue 14); nowhere else."""

from __future__ import annotations

import itertools

import pytest
from sqlalchemy import insert, text

_names = itertools.count()


def _users_rows(n: int) -> list[dict[str, object]]:
    return [
        {"username": f"stats{next(_names)}", "password_hash": "-", "role": "labeler"}
        for _ in range(n)
    ]


def _reltuples(session, table: str) -> float:
    return session.execute(
        text("SELECT reltuples FROM pg_class WHERE relname = :t AND relkind = 'r'"), {"t": table}
    ).scalar_one()


def _grow_users(n: int) -> None:
    """``n`` new users, their changes counted at once (the server's statistics are flushed
    at the end of this transaction, not up to 10 s later)."""
    from app.db import get_engine
    from app.models import User

    with get_engine().begin() as connection:
        connection.execute(insert(User), _users_rows(n))
        connection.execute(text("SELECT pg_stat_force_next_flush()"))


@pytest.fixture
def postgres_only(app_env: str) -> None:
    if not app_env.startswith("postgresql"):
        pytest.skip("autovacuum and ANALYZE are PostgreSQL's")


def test_without_autovacuum_the_sweep_analyzes_the_tables_that_changed(
    postgres_only, session, monkeypatch
) -> None:
    from app.db import get_engine
    from app.services import table_statistics
    from app.worker.heartbeat import sweep_jobs

    monkeypatch.setattr(table_statistics, "autovacuum_on", lambda _connection: False)
    session.execute(text("ANALYZE users"))
    session.commit()
    before = _reltuples(session, "users")
    _grow_users(300)
    with get_engine().connect() as connection:
        assert "users" in table_statistics.analyze_changed_tables(connection)
        # analyzed: nothing left to do until the table changes again
        assert "users" not in table_statistics.analyze_changed_tables(connection)
    session.rollback()  # a new snapshot
    assert _reltuples(session, "users") >= before + 300
    _grow_users(300)
    sweep_jobs()  # the sweep does it (every PREFLOOP_WORKER_HEARTBEAT_S)
    session.rollback()
    assert _reltuples(session, "users") >= before + 600


def test_with_autovacuum_on_the_sweep_leaves_statistics_to_it(postgres_only, monkeypatch) -> None:
    from app.db import get_engine
    from app.services import table_statistics

    monkeypatch.setattr(table_statistics, "autovacuum_on", lambda _connection: True)
    _grow_users(300)
    with get_engine().connect() as connection:
        assert table_statistics.analyze_changed_tables(connection) == []


def test_sqlite_has_nothing_to_analyze(app_env: str) -> None:
    from app.db import get_engine
    from app.services.table_statistics import analyze_changed_tables

    if app_env.startswith("postgresql"):
        pytest.skip("the SQLite side")
    with get_engine().connect() as connection:
        assert analyze_changed_tables(connection) == []


def test_a_table_locked_by_someone_else_waits_for_the_next_sweep(
    postgres_only, monkeypatch
) -> None:
    """A sweep waits at most a second for a table (a migration or a TRUNCATE holding it) and
    goes on with the others; it never holds one table while waiting for another."""
    from app.db import get_engine
    from app.services import table_statistics

    monkeypatch.setattr(table_statistics, "autovacuum_on", lambda _connection: False)
    _grow_users(300)
    with get_engine().connect() as holder, get_engine().connect() as sweeper:
        holder.execute(text("LOCK TABLE users IN ACCESS EXCLUSIVE MODE"))
        # returns while the lock is still held (waiting for it would never end here)
        analyzed = table_statistics.analyze_changed_tables(sweeper)
        holder.rollback()
        assert "users" not in analyzed
        assert "users" in table_statistics.analyze_changed_tables(sweeper)


def _seed_tasks(n: int) -> None:
    """``n`` accepted prompts with an open ranking task each, in two statements."""
    from app.db import get_engine

    with get_engine().begin() as connection:
        connection.execute(
            text(
                "INSERT INTO prompts (text, source, kind, user_id, split, status, created_at)"
                " SELECT 'prompt ' || i, 'api', 'plain', 'customer', 'train', 'accepted', now()"
                " FROM generate_series(1, :n) AS i"
            ),
            {"n": n},
        )
        connection.execute(
            text(
                "INSERT INTO tasks (kind, prompt_id, overlap, filled, status, created_at)"
                " SELECT 'ranking', id, 1, 0, 'open', now() FROM prompts"
            )
        )
        connection.execute(text("SELECT pg_stat_force_next_flush()"))


def test_tasks_are_analyzed_after_a_thousand_changes_at_any_size(
    postgres_only, session, monkeypatch
) -> None:
    """Migration 0011: the queue's table is analyzed once 1,000 of its rows changed, not 10%
    of it (the server's default): at a million prompts a round's last 120,000 tasks were
    done before the statistics noticed, and a next-task for a labeler who had done every open
    task read every open task of the other kinds (1.7-2.0 s a call). Here 12,000 tasks, 1,100
    done: the server's own threshold (50 + 1,200) would not analyze them yet."""
    from app.db import get_engine
    from app.services import table_statistics

    monkeypatch.setattr(table_statistics, "autovacuum_on", lambda _connection: False)
    options = session.execute(
        text("SELECT reloptions FROM pg_class WHERE relname = 'tasks' AND relkind = 'r'")
    ).scalar_one()
    # autovacuum reads the same settings on a server where it is on
    assert set(options) == {
        "autovacuum_analyze_scale_factor=0",
        "autovacuum_analyze_threshold=1000",
        # and vacuumed at 1,000 dead rows + 1% (not 20%): the open tasks' index entries of
        # tasks done are dead until then, and a drained kind's count read them all each time
        "autovacuum_vacuum_scale_factor=0.01",
        "autovacuum_vacuum_threshold=1000",
    }
    _seed_tasks(12_000)
    session.execute(text("ANALYZE tasks"))
    session.commit()
    with get_engine().begin() as connection:
        connection.execute(
            text(
                "UPDATE tasks SET filled = 1, status = 'done' WHERE id <= (SELECT min(id) + 1099 FROM tasks)"
            )
        )
        connection.execute(text("SELECT pg_stat_force_next_flush()"))
    with get_engine().connect() as connection:
        # the tables it analyzed (not a later count of changes: another connection's pending
        # statistics may still arrive up to 10 s after its last transaction)
        assert "tasks" in table_statistics.analyze_changed_tables(connection)
