"""The labeler home's own counts (``labeler_counts``) for a labeler with 10,000 finished tasks,
on PostgreSQL: the query's EXPLAIN ANALYZE execution time and the call's wall time, median of 5.

Seeds its own database with ``COPY`` (200,000 prompts and tasks, 70% ranking, 20%
demonstration, 10% evaluation; the labeler's 10,000 finished assignments, 1 in 19 skipped, 1 in 7
finished today, and one assignment on each other task for 19 other labelers), runs VACUUM
ANALYZE, measures, drops it. ``--code DIR`` measures another checkout's code (its migrations and
``labeler_counts``), so before/after is the same script on two trees:

    python benchmarks/labeler_counts.py --code /path/to/main
    python benchmarks/labeler_counts.py
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
TASKS, OWN, OTHERS = 200_000, 10_000, 19


def _kind(task_id: int) -> str:
    return "ranking" if task_id % 10 < 7 else "demonstration" if task_id % 10 < 9 else "evaluation"


def seed(url: str) -> None:
    from sqlalchemy import create_engine, inspect

    from app.migrate import upgrade_to_head

    upgrade_to_head(url)
    engine = create_engine(url)
    with_kind = "task_kind" in {c["name"] for c in inspect(engine).get_columns("assignments")}
    now = datetime.now(UTC)
    old = now - timedelta(days=3)
    raw = engine.raw_connection()
    cur = raw.cursor()

    def copy(table: str, columns: list[str], rows) -> None:
        with cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as c:
            for row in rows:
                c.write_row(row)

    copy(
        "users",
        ["id", "username", "password_hash", "role", "held_out", "is_active",
         "must_change_password", "created_at"],
        ((i, f"labeler{i}", "x", "labeler", False, True, False, now) for i in range(1, OTHERS + 2)),
    )  # fmt: skip
    copy(
        "prompts",
        ["id", "text", "source", "kind", "user_id", "status", "created_at"],
        ((i, f"prompt {i}", "api", "api", f"c{i % 500}", "accepted", now)
         for i in range(1, TASKS + 1)),
    )  # fmt: skip
    copy(
        "tasks",
        ["id", "kind", "prompt_id", "overlap", "filled", "status", "created_at"],
        ((i, _kind(i), i, 1, 1, "done", now) for i in range(1, TASKS + 1)),
    )  # fmt: skip

    def assignments():
        for t in range(1, TASKS + 1):
            labeler = 1 if t <= OWN else 2 + t % OTHERS
            status = "skipped" if t % 19 == 0 else "submitted"
            finished = now if t % 7 == 1 else old
            row = (t, labeler, status, finished, finished, finished)
            yield (t, _kind(t), *row[1:]) if with_kind else row

    columns = ["task_id", "labeler_id", "status", "assigned_at", "lock_expires_at", "finished_at"]
    if with_kind:
        columns.insert(1, "task_kind")
    copy("assignments", columns, assignments())
    raw.commit()
    raw.close()
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
        c.exec_driver_sql("VACUUM ANALYZE")
    engine.dispose()


def measure(url: str, runs: int = 5) -> None:
    from sqlalchemy import create_engine, event
    from sqlalchemy.orm import Session

    from app.models import User
    from app.services.labeler_work import labeler_counts

    engine = create_engine(url)
    seen: list[tuple[str, object]] = []
    event.listen(engine, "before_cursor_execute", lambda c, cur, s, p, ctx, m: seen.append((s, p)))
    walls, executions = [], []
    with Session(engine) as session:
        user = session.get_one(User, 1)
        counts = labeler_counts(session, user)  # warm: plan cache, buffers
        statement, params = seen[-1]
        for _ in range(runs):
            start = time.perf_counter()
            labeler_counts(session, user)
            walls.append((time.perf_counter() - start) * 1000)
        conn = session.connection()
        for i in range(runs):
            plan = [
                row[0]
                for row in conn.exec_driver_sql(
                    "EXPLAIN (ANALYZE, BUFFERS) " + statement,
                    params,  # type: ignore[arg-type]
                )
            ]
            executions.append(float(plan[-1].split(":")[1].split()[0]))
            if i == 0:
                print("\n".join(plan))
    engine.dispose()
    print(f"counts: {counts}")
    print(f"EXPLAIN ANALYZE execution time, median of {runs}: {statistics.median(executions):.2f} ms"
          f" (all: {', '.join(f'{x:.2f}' for x in executions)})")  # fmt: skip
    print(f"labeler_counts wall time, median of {runs}: {statistics.median(walls):.2f} ms"
          f" (all: {', '.join(f'{x:.2f}' for x in walls)})")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--code", default=str(ROOT), help="checkout whose app/ to measure")
    parser.add_argument("--admin-url", default=PG_ADMIN_URL)
    args = parser.parse_args()
    sys.path.insert(0, args.code)
    sys.path.insert(1, str(ROOT))
    from benchmarks.labeling_http import create_database, drop_database

    url = create_database(args.admin_url)
    try:
        start = time.perf_counter()
        seed(url)
        print(f"seeded in {time.perf_counter() - start:.1f} s ({args.code})")
        measure(url)
    finally:
        drop_database(args.admin_url, url)


if __name__ == "__main__":
    main()
