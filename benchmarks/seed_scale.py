"""A PostgreSQL database at production scale, made with ``COPY``, and the p99 of the pages that
must stay fast there (issue 14).

At ``--scale 1``: 1,000,000 prompts (80/10/10 train/val/test, 10% with a PII report, the
train and val ones with their demonstration task), 300,000 ranking tasks of K = 4 (90% labeled,
overlap 1-2, the rest open), 500,000 rankings with their entries and submitted holds, 50
labelers and a researcher. ``--scale 0.05`` makes a twentieth of everything.

``--measure``: then serve it (``prefloop serve --workers W``) and run Locust with
``--labelers`` labelers (next -> submit, now and then their home page) and two researchers
(/admin, /admin/data) for ``--seconds``; prints the p50/p99 of each page.

    python benchmarks/seed_scale.py --scale 0.1 [--measure] [--keep]
    python benchmarks/seed_scale.py --reuse URL --measure   # a database kept by --keep
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.labeling_http import (  # noqa: E402
    PG_ADMIN_URL,
    create_database,
    drop_database,
    free_port,
    run_locust,
    stop,
    wait_for,
)

RESEARCHER_PASSWORD = "bench researcher password"
K = 4


def _copy(cur, table: str, columns: list[str], rows) -> int:
    n = 0
    with cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)
            n += 1
    return n


def seed(url: str, scale: float, labelers: int) -> dict[str, object]:
    from sqlalchemy import create_engine

    from app.migrate import upgrade_to_head
    from app.services.accounts import TOKEN_PREFIX, hash_password, hash_token

    upgrade_to_head(url)
    n_prompts = int(1_000_000 * scale)
    n_tasks = int(300_000 * scale)
    n_rankings = int(500_000 * scale)
    labeled = int(n_tasks * 0.9)
    twice = n_rankings - labeled  # tasks with two rankings; the others have one
    assert 0 <= twice <= labeled
    rng = random.Random(0)
    now = datetime.now(UTC)
    engine = create_engine(url)
    raw = engine.raw_connection()
    conn = raw.driver_connection
    assert conn is not None
    tokens = [TOKEN_PREFIX + secrets.token_urlsafe(24) for _ in range(labelers)]
    counts: dict[str, int] = {}
    started = time.perf_counter()
    with conn.cursor() as cur:
        password = hash_password(RESEARCHER_PASSWORD)
        users = [(i + 1, f"labeler{i}", "-", "labeler", False, True, "approved", False, now)
                 for i in range(labelers)]  # fmt: skip
        users.append((labelers + 1, "researcher", password, "researcher", False, True,
                      "approved", False, now))  # fmt: skip
        counts["users"] = _copy(cur, "users", ["id", "username", "password_hash", "role",
                                "held_out", "is_active", "labeler_status",
                                "must_change_password", "created_at"], users)  # fmt: skip
        _copy(cur, "api_tokens", ["user_id", "name", "token_hash", "prefix", "scopes",
              "created_at"], ((i + 1, "bench", hash_token(t), t[:8], "[]", now)
              for i, t in enumerate(tokens)))  # fmt: skip

        def split_of(pid: int) -> str:
            r = (pid * 2654435761) % 100
            return "train" if r < 80 else "val" if r < 90 else "test"

        def prompts():
            for pid in range(1, n_prompts + 1):
                pii = '{"EMAIL_ADDRESS": 1}' if pid % 10 == 0 else "{}"
                text = f"Prompt {pid}: explain topic {rng.randrange(10**6)} to a beginner."
                yield (pid, text, "api", "api", "bench", f"customer-{pid % 20000}",
                       "accepted", split_of(pid), pii, f"k{pid}", now)  # fmt: skip

        counts["prompts"] = _copy(cur, "prompts", ["id", "text", "source", "kind", "client",
                                  "user_id", "status", "split", "pii", "dedup_key",
                                  "created_at"], prompts())  # fmt: skip
        # ranking tasks on the first n_tasks prompts; demonstration tasks for train/val prompts
        counts["completions"] = _copy(cur, "completions", ["id", "prompt_id", "text", "origin",
            "created_at"], ((t * K + i + 1, t + 1, f"Output {i} for prompt {t + 1}.", "bench",
            now) for t in range(n_tasks) for i in range(K)))  # fmt: skip

        def overlap(t: int) -> int:
            return 2 if t < twice else 1

        # in the order a queue grows: earlier rounds' ranking tasks (done), the demonstration
        # tasks intake made for train/val prompts as they arrived, then this round's ranking
        # tasks (a sampling job's, open) after that backlog. Seeded ranking-first, the ranking
        # queue's cost at this size was hidden: every ranking next-task walked past the open
        # demonstration tasks before them until migration 0012 (docs/performance.md)
        demo_ids = [pid for pid in range(1, n_prompts + 1) if split_of(pid) != "test"]

        def task_id(t: int) -> int:
            return t + 1 if t < labeled else t + 1 + len(demo_ids)

        task_columns = ["id", "kind", "prompt_id", "overlap", "filled", "status", "created_at"]
        counts["ranking tasks"] = _copy(cur, "tasks", task_columns, (
            (task_id(t), "ranking", t + 1, overlap(t), overlap(t), "done", now)
            for t in range(labeled)))  # fmt: skip
        counts["demonstration tasks"] = _copy(cur, "tasks", task_columns, (
            (labeled + i + 1, "demonstration", pid, 1, 0, "open", now)
            for i, pid in enumerate(demo_ids)))  # fmt: skip
        counts["ranking tasks"] += _copy(cur, "tasks", task_columns, (
            (task_id(t), "ranking", t + 1, 1, 0, "open", now)
            for t in range(labeled, n_tasks)))  # fmt: skip
        _copy(cur, "task_items", ["task_id", "completion_id", "position"],
              ((task_id(t), t * K + i + 1, i) for t in range(n_tasks) for i in range(K)))  # fmt: skip

        def rankings():
            rid = 0
            for t in range(labeled):
                for j in range(overlap(t)):
                    rid += 1
                    labeler = (t + j) % labelers + 1
                    order = [t * K + i + 1 for i in range(K)]
                    yield rid, t + 1, labeler, order

        ranking_rows = list(rankings())
        counts["rankings"] = _copy(cur, "rankings", ["id", "task_id", "prompt_id",
            "labeler_id", "k", "display_order", "time_spent_ms", "created_at"],
            ((rid, t, t, lab, K, json.dumps(order), 30000, now)
             for rid, t, lab, order in ranking_rows))  # fmt: skip
        _copy(cur, "ranking_entries", ["ranking_id", "completion_id", "rank", "flags"],
              ((rid, cid, pos + 1, "[]") for rid, _, _, order in ranking_rows
               for pos, cid in enumerate(order)))  # fmt: skip
        _copy(cur, "assignments", ["task_id", "task_kind", "labeler_id", "status",
              "assigned_at", "lock_expires_at", "finished_at", "display_order"],
              ((t, "ranking", lab, "submitted", now, now, now, json.dumps(order))
               for _, t, lab, order in ranking_rows))  # fmt: skip
        for table in ("users", "api_tokens", "prompts", "completions", "tasks", "task_items",
                      "rankings", "ranking_entries", "assignments"):  # fmt: skip
            cur.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                        f"(SELECT coalesce(max(id), 1) FROM {table}))")  # fmt: skip
    conn.commit()
    raw.close()
    # outside a transaction: an ANALYZE in one that is rolled back on close leaves no statistics
    # (it did, and every plan at scale 1 assumed a few dozen rows per table). VACUUM too: a
    # database that grew to this size was vacuumed on the way (autovacuum, or an operator where
    # it is off), and without a visibility map no index-only scan pays off (a veteran
    # labeler's home counts read 5,400 heap pages instead of 14 index pages: 30 ms, not 9)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
        c.exec_driver_sql("VACUUM ANALYZE")
    engine.dispose()
    elapsed = time.perf_counter() - started
    print(f"seeded in {elapsed:.0f}s (COPY): "
          + ", ".join(f"{v:,} {k}" for k, v in counts.items()))  # fmt: skip
    return {"labelers": tokens}


def measure(url: str, accounts: dict, work: Path, args: argparse.Namespace) -> None:
    accounts = dict(accounts, researchers=[{"username": "researcher",
                                            "password": RESEARCHER_PASSWORD}])  # fmt: skip
    (work / "tokens.json").write_text(json.dumps(accounts))
    port = free_port()
    env = dict(os.environ, PREFLOOP_DATABASE_URL=url, PREFLOOP_DATA_DIR=str(work),
               PREFLOOP_SECRET_KEY="bench-secret-key-not-for-production-0123456789",
               PYTHONPATH=str(args.app_root))  # fmt: skip
    server = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", "--port", str(port), "--workers",
         str(args.workers), "--no-worker"],
        cwd=args.app_root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    try:
        wait_for(port, server, "/login", timeout=600)
        if args.warm:
            print(f"admin figures first counted in {warm_admin_figures(port):.0f} s (not measured)")
        os.environ["PREFLOOP_LOCUST_THINK_S"] = str(args.think)
        stats = run_locust(f"http://127.0.0.1:{port}", "BrowsingLabeler ResearcherUser",
                           args.labelers + 2, args.seconds, work / "tokens.json",
                           work / "scale", ramp_up=args.ramp_up)  # fmt: skip
    finally:
        stop(server)
    for name in ("next", "submit", "labeler home", "/admin", "/admin/overview", "/admin/data"):
        row = stats.get(name)
        if row:
            print(f"{name}: {row['Request Count']} requests, p50 {row['50%']} ms, "
                  f"p99 {row['99%']} ms, {row['Failure Count']} failed")  # fmt: skip


def warm_admin_figures(port: int, timeout: float = 900) -> float:
    """Sign in as the researcher and open /admin/overview and /admin/data until every web
    process has counted their whole-table figures (no "being counted" page ten times in a
    row): the steady state a running installation is in, rather than the first minute after a
    restart, when a view waits up to 2 s for the first count (admin_figures.py). Returns the
    seconds it took."""
    import http.cookiejar
    import re
    import urllib.parse
    import urllib.request

    opener = urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
    )
    base = f"http://127.0.0.1:{port}"
    page = opener.open(f"{base}/login").read().decode()
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)
    form = {"username": "researcher", "password": RESEARCHER_PASSWORD,
            "csrf_token": token.group(1) if token else ""}  # fmt: skip
    opener.open(f"{base}/login", data=urllib.parse.urlencode(form).encode()).read()
    started = time.monotonic()
    ready = 0
    while ready < 10 and time.monotonic() - started < timeout:
        counted = all(
            b"figures-counting" not in opener.open(f"{base}{path}").read()
            for path in ("/admin/overview", "/admin/data")
        )
        ready = ready + 1 if counted else 0
        if not counted:
            time.sleep(1)
    return time.monotonic() - started


def _accounts_file(url: str) -> Path:
    """Where --keep leaves the labelers' tokens for a later --reuse."""
    from sqlalchemy.engine import make_url

    return Path(tempfile.gettempdir()) / f"{make_url(url).database}.accounts.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--labelers", type=int, default=20, help="--measure: labelers working")
    parser.add_argument("--accounts", type=int, default=50, help="labeler accounts")
    parser.add_argument("--measure", action="store_true")
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument(
        "--think",
        type=float,
        default=0.0,
        help="--measure: seconds each labeler pauses between actions (0: back to back)",
    )
    parser.add_argument(
        "--no-warm",
        dest="warm",
        action="store_false",
        help="--measure: start Locust at once, while the admin figures are first counted",
    )
    parser.add_argument(
        "--ramp-up",
        type=float,
        default=0.0,
        help="--measure: start the users over this many seconds and measure only after "
        "(the steady state: no logins, no first requests of a process); 0: from the start",
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--keep", action="store_true", help="keep the database (its URL printed)")
    parser.add_argument(
        "--reuse",
        metavar="URL",
        help="measure a database kept by --keep "
        "(its accounts read from URL's accounts file) instead of seeding",
    )
    parser.add_argument("--app-root", type=Path, default=ROOT)
    parser.add_argument("--postgres-admin-url", default=PG_ADMIN_URL)
    args = parser.parse_args()
    # the servers' data directory (their generated secret key), removed when done unless given
    made_data_dir = None
    if "PREFLOOP_DATA_DIR" not in os.environ:
        made_data_dir = tempfile.mkdtemp(prefix="prefloop-scale-")
        os.environ["PREFLOOP_DATA_DIR"] = made_data_dir
    os.environ.setdefault("PREFLOOP_SECRET_KEY", "bench-secret-key-not-for-production-0123")
    if args.reuse:
        url = args.reuse
        accounts = json.loads(_accounts_file(url).read_text())
        args.keep = True
    else:
        url = create_database(args.postgres_admin_url)
    try:
        if not args.reuse:
            accounts = seed(url, args.scale, args.accounts)
            if args.keep:
                _accounts_file(url).write_text(json.dumps(accounts))
        if args.measure:
            measure(url, accounts, Path(os.environ["PREFLOOP_DATA_DIR"]), args)
    finally:
        if args.keep:
            print(f"kept: {url}")
        else:
            drop_database(args.postgres_admin_url, url)
        if made_data_dir is not None:
            shutil.rmtree(made_data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
