"""Labeling throughput through the task queue on SQLite and PostgreSQL.

For each backend: a fresh database with ``--tasks`` ranking tasks (K = 5, overlap 1..3), then
``--labelers`` threads each take a task (`assign_next_task`), read it and submit a ranking
(`submit`) until nothing is left: two transactions per submission, as through the API. As a
reference measured in the same run with the same threads, the same number of minimal
two-transaction cycles (one single-row insert each) is timed; the ratio says what the queue's
rules (locks, slot accounting, validation) cost over the database's floor.

    python benchmarks/labeling_queue.py [--tasks 1000] [--labelers 8] [--skip-postgres]
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PG_ADMIN_URL = os.environ.get(
    "PREFLOOP_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def use_database(url: str) -> None:
    from app.config import get_settings
    from app.db import get_engine, get_sessionmaker

    os.environ["PREFLOOP_DATABASE_URL"] = url
    if get_sessionmaker.cache_info().currsize:
        get_engine().dispose()
    get_settings.cache_clear()
    get_engine.cache_clear()
    get_sessionmaker.cache_clear()


def seed(tasks: int, labelers: int) -> tuple[list[int], int]:
    """Ranking tasks over test-split prompts (no demonstration tasks) and labeler accounts."""
    from app.db import get_sessionmaker
    from app.models import Completion, Prompt, Task, TaskItem, User

    slots = 0
    with get_sessionmaker()() as s:
        users = [User(username=f"bench{i}", password_hash="-") for i in range(labelers)]
        s.add_all(users)
        for n in range(tasks):
            prompt = Prompt(text=f"Prompt {n}", source="api", user_id=f"c{n % 50}",
                            status="accepted", split="test")  # fmt: skip
            s.add(prompt)
            s.flush()
            outputs = [Completion(prompt_id=prompt.id, text=f"Output {i} of {n}", origin="bench")
                       for i in range(5)]  # fmt: skip
            s.add_all(outputs)
            s.flush()
            task = Task(kind="ranking", prompt_id=prompt.id, overlap=1 + n % 3)
            task.items = [TaskItem(completion_id=c.id, position=i) for i, c in enumerate(outputs)]
            s.add(task)
            slots += task.overlap
        s.commit()
        return [u.id for u in users], slots


def run_threads(target, user_ids: list[int]) -> float:
    errors: list[BaseException] = []

    def guarded(uid: int) -> None:
        try:
            target(uid)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(uid,)) for uid in user_ids]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return time.perf_counter() - started


def labeler(uid: int) -> None:
    from app.db import get_sessionmaker
    from app.models import User
    from app.services.labeling import describe_assignment, submit
    from app.services.queue import assign_next_task

    maker = get_sessionmaker()
    while True:
        with maker() as s:
            assignment = assign_next_task(s, s.get_one(User, uid), "ranking")
            if assignment is None:
                s.commit()
                return
            task = describe_assignment(s, assignment)
            s.commit()
        shown = [c["completion_id"] for c in task["completions"]]
        with maker() as s:
            body = {"ranking": [[c] for c in shown], "ratings": {shown[0]: {"likert": 6}}}
            submit(s, s.get_one(User, uid), task["task_id"], body)
            s.commit()


def bench_backend(name: str, url: str, tasks: int, labelers: int) -> None:
    from sqlalchemy import func, select, text

    from app.db import get_sessionmaker
    from app.migrate import upgrade_to_head
    from app.models import Ranking, Task

    upgrade_to_head(url)
    use_database(url)
    user_ids, seeded = seed(tasks, labelers)
    queue_s = run_threads(labeler, user_ids)
    with get_sessionmaker()() as s:
        done = s.execute(select(func.count()).select_from(Ranking)).scalar_one()
        # adaptive overlap gives a task whose labelers disagreed one more slot (the labelers
        # here rank in the order shown, which is shuffled for each of them), which may stay
        # open once every labeler has ranked it: one ranking per filled slot, none over
        filled = s.execute(select(func.coalesce(func.sum(Task.filled), 0))).scalar_one()
        over = s.execute(select(func.count()).where(Task.filled > Task.overlap)).scalar_one()
        s.execute(text("CREATE TABLE bench_ref (id INTEGER PRIMARY KEY, uid INTEGER)"))
        s.commit()
    assert done == filled >= seeded and over == 0, (done, filled, seeded, over)
    slots = done

    # reference: the same number of two-transaction cycles, each a single-row insert
    per_thread = [slots // labelers + (i < slots % labelers) for i in range(labelers)]
    counter = iter(range(10**9))
    lock = threading.Lock()

    def minimal(uid: int) -> None:
        for _ in range(per_thread[user_ids.index(uid)]):
            for _ in range(2):
                with lock:
                    row_id = next(counter)
                with get_sessionmaker()() as s:
                    s.execute(
                        text("INSERT INTO bench_ref VALUES (:i, :u)"), {"i": row_id, "u": uid}
                    )
                    s.commit()

    ref_s = run_threads(minimal, user_ids)
    print(f"{name}: {slots} rankings by {labelers} labelers in {queue_s:.1f}s = "
          f"{slots / queue_s:,.0f} submissions/s ({tasks} tasks, overlap 1-3 and "
          f"{slots - seeded} more by adaptive overlap)")  # fmt: skip
    print(f"{name}: reference {slots} minimal two-transaction cycles {slots / ref_s:,.0f}/s; "
          f"the queue runs at {ref_s / queue_s:.2f}x the reference rate")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1_000, help="ranking tasks to label")
    parser.add_argument("--labelers", type=int, default=8, help="concurrent labeler threads")
    parser.add_argument("--skip-postgres", action="store_true")
    parser.add_argument("--postgres-admin-url", default=PG_ADMIN_URL)
    args = parser.parse_args()

    # the data directory (the SQLite files), removed when done
    workdir = Path(tempfile.mkdtemp(prefix="prefloop-bench-"))
    os.environ.setdefault("PREFLOOP_DATA_DIR", str(workdir))
    os.environ.setdefault("PREFLOOP_SECRET_KEY", "bench-secret-key-not-for-production-0123")
    try:
        run(args, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def run(args: argparse.Namespace, workdir: Path) -> None:
    bench_backend("SQLite", f"sqlite:///{workdir / 'bench.sqlite'}", args.tasks, args.labelers)
    if args.skip_postgres:
        return
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    admin = create_engine(args.postgres_admin_url, isolation_level="AUTOCOMMIT")
    name = f"prefloop_bench_{secrets.token_hex(3)}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        url = make_url(args.postgres_admin_url).set(database=name)
        bench_backend("PostgreSQL", url.render_as_string(hide_password=False), args.tasks,
                      args.labelers)  # fmt: skip
    finally:
        use_database("sqlite://")
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    main()
