"""Labeling over HTTP, prefloop against its floor, in one command (issue 14's measurement).

For each of prefloop (``prefloop serve --workers W``) and the minimal reference app
(benchmarks/reference_app.py, same uvicorn worker count): a fresh PostgreSQL database with the
same ``--tasks`` ranking tasks (K = 5, overlap 1..3), then Locust (benchmarks/locustfile.py)
runs ``--users`` labelers looping next -> submit for ``--seconds``, headless. Prints
submissions/s, p50/p99 of next and submit for both, the ratios, the integrity of prefloop's
queue afterwards (no task over its overlap, one ranking per submission), and non-2xx answers.

``--rounds R``: both servers stay up and the two sides take R turns each, in alternating
order; each round prints its ratio, and the last line the median of the rounds'. This
machine's speed drifts by tens of percent over minutes (the reference alone moved between 159
and 253 submissions/s from one run to the next), so a ratio of two sides measured minutes
apart, once, moves with it.

    python benchmarks/labeling_http.py [--users 100] [--seconds 60] [--workers 2]
        [--tasks 20000] [--rounds 1] [--sqlite]

``--sqlite``: both on SQLite files instead, prefloop on its embedded default and the reference
with the same write lock per transaction (``BEGIN IMMEDIATE``); the issue's SQLite goal is at
10 labelers.

On a PostgreSQL server without autovacuum (this machine's CI configuration), prefloop's sweep
analyzes its changed tables itself (``app.services.table_statistics``); the reference's database
is analyzed the same way, every 5 s, so both sides' query plans follow their data as they would
on a server with autovacuum.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PY = sys.executable
# how the locustfile's labelers report a 204 from next-task: the run's tasks ran out, and what
# is measured from then on is an empty queue answering at once (`ran_dry` stops the run)
NOTHING_WAITING = "nothing waiting (204): the load test's tasks ran out"
PG_ADMIN_URL = os.environ.get(
    "PREFLOOP_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(port: int, proc: subprocess.Popen, path: str, timeout: float = 120) -> None:
    """Until every worker process answers (a few rounds of quick 2xx-4xx answers)."""
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    answered = 0
    while time.monotonic() < deadline and answered < 20:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        started = time.monotonic()
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5).close()
        except urllib.error.HTTPError:
            pass
        except OSError:
            time.sleep(0.3)
            continue
        answered = answered + 1 if time.monotonic() - started < 0.5 else 0
    if answered < 20:
        raise TimeoutError(f"the server on {port} did not come up")


def process_tree(pid: int) -> list[Any]:
    """The process ``pid`` and its children (psutil processes)."""
    import psutil

    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def cpu_seconds(procs: list[Any]) -> float:
    """User + system CPU seconds used so far by ``procs``; those gone meanwhile count 0."""
    import psutil

    total = 0.0
    for p in procs:
        try:
            times = p.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


def wait_until_idle(proc: subprocess.Popen, timeout: float = 180) -> float:
    """Until the server and its children (the PII scanner's processes, which load Presidio
    after the server answers) use under a tenth of a core: the measurement is of the steady
    state, not of start-up work competing with the first seconds of Locust. Returns the
    seconds waited."""
    started = time.monotonic()
    before = cpu_seconds(process_tree(proc.pid))
    while time.monotonic() - started < timeout:
        time.sleep(2)
        now = cpu_seconds(process_tree(proc.pid))
        if now - before < 0.2:
            break
        before = now
    return time.monotonic() - started


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def create_database(admin_url: str) -> str:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"prefloop_bench_{secrets.token_hex(3)}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def drop_database(admin_url: str, url: str) -> None:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)'))
    admin.dispose()


def seed_prefloop(url: str, tasks: int, labelers: int, app_root: Path = ROOT) -> list[str]:
    """Ranking tasks (test split: no demonstration tasks) and labelers with API tokens, in a
    database migrated by ``app_root``'s migrations (the checkout that will serve it)."""
    from sqlalchemy import create_engine, insert, select

    from app.models import ApiToken, Completion, Prompt, Task, TaskItem, User
    from app.services.accounts import TOKEN_PREFIX, hash_token

    subprocess.run(
        [PY, "-c", f"from app.migrate import upgrade_to_head; upgrade_to_head({url!r})"],
        cwd=app_root,
        env=dict(os.environ, PYTHONPATH=str(app_root)),
        check=True,
    )
    engine = create_engine(url)
    secrets_ = [TOKEN_PREFIX + secrets.token_urlsafe(24) for _ in range(labelers)]
    with engine.begin() as conn:
        user_ids = conn.scalars(
            insert(User).returning(User.id),
            [{"username": f"bench{i}", "password_hash": "-", "role": "labeler"}
             for i in range(labelers)],
        ).all()  # fmt: skip
        conn.execute(
            insert(ApiToken),
            [{"user_id": uid, "name": "bench", "token_hash": hash_token(s), "prefix": s[:8],
              "scopes": []} for uid, s in zip(user_ids, secrets_, strict=True)],
        )  # fmt: skip
        prompt_ids = conn.scalars(
            insert(Prompt).returning(Prompt.id, sort_by_parameter_order=True),
            [{"text": f"Prompt {n}: explain something simply.", "source": "api",
              "kind": "api", "user_id": f"c{n % 50}", "status": "accepted", "split": "test"}
             for n in range(tasks)],
        ).all()  # fmt: skip
        completion_rows = [
            {"prompt_id": pid, "text": f"Output {i} of {n}", "origin": "bench"}
            for n, pid in enumerate(prompt_ids)
            for i in range(5)
        ]
        completion_ids = conn.scalars(
            insert(Completion).returning(Completion.id, sort_by_parameter_order=True),
            completion_rows,
        ).all()
        task_ids = conn.scalars(
            insert(Task).returning(Task.id, sort_by_parameter_order=True),
            [{"kind": "ranking", "prompt_id": pid, "overlap": 1 + n % 3, "filled": 0,
              "status": "open"} for n, pid in enumerate(prompt_ids)],
        ).all()  # fmt: skip
        conn.execute(
            insert(TaskItem),
            [{"task_id": tid, "completion_id": completion_ids[n * 5 + i], "position": i}
             for n, tid in enumerate(task_ids) for i in range(5)],
        )  # fmt: skip
        assert len(conn.execute(select(Task.id)).all()) == tasks
    # statistics as a live database has them (autovacuum analyzes within a minute of a bulk
    # load): without them PostgreSQL read the task's outputs with a sequential scan of every
    # completion, 9 ms of each next-task call at 20,000 tasks, longer than the rest of the cycle
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("ANALYZE")
    engine.dispose()
    return secrets_


def integrity(url: str) -> str:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.connect() as conn:
        over = conn.scalar(text("SELECT count(*) FROM tasks WHERE filled > overlap"))
        twice = conn.scalar(
            text("SELECT count(*) FROM (SELECT task_id, labeler_id FROM rankings"
                 " GROUP BY 1, 2 HAVING count(*) > 1) x")
        )  # fmt: skip
        rankings = conn.scalar(text("SELECT count(*) FROM rankings"))
        submitted = conn.scalar(text("SELECT count(*) FROM assignments WHERE status='submitted'"))
        over_done = conn.scalar(
            text("SELECT count(*) FROM tasks t WHERE (SELECT count(*) FROM rankings r"
                 " WHERE r.task_id = t.id) > t.overlap")
        )  # fmt: skip
    engine.dispose()
    ok = over == 0 and twice == 0 and over_done == 0 and rankings == submitted
    return (f"integrity {'held' if ok else 'BROKEN'}: {rankings} rankings = {submitted} "
            f"submitted holds, {over} tasks over their overlap, {over_done} with more rankings "
            f"than overlap, {twice} double rankings")  # fmt: skip


def run_locust(host: str, user_class: str, users: int, seconds: int, tokens: Path,
               out: Path, ramp_up: float = 0) -> dict[str, dict[str, str]]:  # fmt: skip
    """Locust for ``seconds``; with ``ramp_up``, the users start over that many seconds first
    and the statistics are reset once all have started (``--reset-stats``): the figures are
    then of the steady state, without the logins and each server's first requests."""
    env = dict(os.environ, PREFLOOP_LOCUST_TOKENS=str(tokens), PYTHONPATH=str(ROOT))
    rate = users / ramp_up if ramp_up else max(1, users // 2)
    steady = ["--reset-stats"] if ramp_up else []
    cmd = [PY, "-m", "locust", "-f", str(ROOT / "benchmarks" / "locustfile.py"), "--headless",
           "-u", str(users), "-r", str(rate), "-t", f"{seconds + int(ramp_up)}s", *steady,
           "--host", host, "--csv", str(out), "--only-summary", "--stop-timeout", "10",
           *user_class.split()]  # fmt: skip
    subprocess.run(cmd, env=env, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    with open(f"{out}_failures.csv") as f:
        for row in list(csv.DictReader(f))[:3]:
            print(
                f"  failure: {row['Method']} {row['Name']}: {row['Error'][:160]} x{row['Occurrences']}"
            )
    with open(f"{out}_stats.csv") as f:
        return {row["Name"]: row for row in csv.DictReader(f)}


def ran_dry(out: Path) -> bool:
    """Whether a Locust run (its CSVs at ``out``) heard "nothing waiting" from next-task."""
    with open(f"{out}_failures.csv") as f:
        return any(NOTHING_WAITING in row["Error"] for row in csv.DictReader(f))


def summary(label: str, stats: dict[str, dict[str, str]]) -> dict[str, float]:
    nxt, sub = stats.get("next", {}), stats.get("submit", {})

    def num(row: dict[str, str], key: str) -> float:
        try:
            return float(row.get(key) or 0)
        except ValueError:
            return 0.0

    result = {
        "rate": num(sub, "Requests/s"),
        "next_p50": num(nxt, "50%"), "next_p99": num(nxt, "99%"),
        "submit_p50": num(sub, "50%"), "submit_p99": num(sub, "99%"),
        "failures": num(nxt, "Failure Count") + num(sub, "Failure Count"),
        "requests": num(nxt, "Request Count") + num(sub, "Request Count"),
    }  # fmt: skip
    print(f"{label}: {result['rate']:,.1f} submissions/s; next p50/p99 "
          f"{result['next_p50']:,.0f}/{result['next_p99']:,.0f} ms; submit p50/p99 "
          f"{result['submit_p50']:,.0f}/{result['submit_p99']:,.0f} ms; "
          f"{result['failures']:.0f} failed of {result['requests']:.0f} requests")  # fmt: skip
    return result


def access_log_off(root: Path) -> list[str]:
    """``--no-access-log`` where that checkout's ``prefloop serve`` has it (the reference runs
    uvicorn with ``--no-access-log``: the same work on both sides)."""
    return ["--no-access-log"] if "--no-access-log" in (root / "app" / "cli.py").read_text() else []


def git_head(root: Path) -> str:
    out = subprocess.run(["git", "-C", str(root), "log", "-1", "--format=%h %s"],
                         capture_output=True, text=True, check=False)  # fmt: skip
    return out.stdout.strip()[:70]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="turns of each side, in alternating order (this machine's speed drifts: a ratio "
        "of sides measured minutes apart moves with it); prints the median ratio",
    )
    parser.add_argument(
        "--sqlite", action="store_true", help="both on SQLite files (the embedded default)"
    )
    parser.add_argument("--postgres-admin-url", default=PG_ADMIN_URL)
    parser.add_argument(
        "--app-root",
        type=Path,
        default=ROOT,
        help="checkout whose prefloop is served (e.g. an older commit's, for before/after)",
    )
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="prefloop-http-bench-"))
    admin = args.postgres_admin_url
    pf_url = f"sqlite:///{work / 'bench.sqlite'}" if args.sqlite else create_database(admin)
    ref_url = f"sqlite:///{work / 'reference.sqlite'}" if args.sqlite else create_database(admin)
    procs: list[subprocess.Popen] = []
    reference_analyzed = threading.Event()  # set: the reference's statistics upkeep stops
    analyzer: threading.Thread | None = None
    try:
        tokens = seed_prefloop(pf_url, args.tasks, args.users, args.app_root)
        print(f"prefloop from {args.app_root.resolve()} ({git_head(args.app_root)})")
        (work / "tokens.json").write_text(json.dumps({"labelers": tokens}))
        from benchmarks.reference_app import seed

        seed(ref_url, args.tasks)
        pf_port, ref_port = free_port(), free_port()
        env = dict(os.environ, PREFLOOP_DATABASE_URL=pf_url, PREFLOOP_DATA_DIR=str(work),
                   PREFLOOP_SECRET_KEY="bench-secret-key-not-for-production-0123456789",
                   PREFLOOP_GOLD_RATE="0")  # fmt: skip
        server = subprocess.Popen(
            # no access log, as the reference runs (an older checkout lacks the option)
            [PY, "-m", "app.cli", "serve", "--port", str(pf_port), "--workers",
             str(args.workers), "--no-worker", *access_log_off(args.app_root)],
            cwd=args.app_root, env=dict(env, PYTHONPATH=str(args.app_root)),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        procs.append(server)
        ref = subprocess.Popen(
            [PY, "-m", "uvicorn", "benchmarks.reference_app:app", "--port", str(ref_port),
             "--workers", str(args.workers), "--log-level", "warning", "--no-access-log"],
            cwd=ROOT, env=dict(os.environ, PREFLOOP_REFERENCE_DATABASE_URL=ref_url),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        procs.append(ref)
        if not args.sqlite:
            analyzer = threading.Thread(target=analyze_until, args=(ref_url, reference_analyzed))
            analyzer.start()
        wait_for(pf_port, server, "/login")
        wait_for(ref_port, ref, "/docs")
        print(f"  prefloop's start-up work done after {wait_until_idle(server):.0f} s more")
        wait_until_idle(ref)
        database = "SQLite" if args.sqlite else "PostgreSQL"
        sides = [
            (f"prefloop ({database}, {args.workers} workers, {args.users} labelers)",
             pf_port, "LabelerUser", "prefloop"),
            (f"reference ({args.workers} workers, {args.users} labelers)",
             ref_port, "ReferenceLabeler", "reference"),
        ]  # fmt: skip
        ratios: list[dict[str, float]] = []
        for round_ in range(args.rounds):
            if args.rounds > 1:
                print(f"round {round_ + 1} of {args.rounds}:")
            # each round in the other order, so neither side always runs first
            order = sides if round_ % 2 == 0 else sides[::-1]
            results: dict[str, dict[str, float]] = {}
            for label, port, user_class, name in order:
                results[name] = summary(
                    label,
                    run_locust(f"http://127.0.0.1:{port}", user_class, args.users,
                               args.seconds, work / "tokens.json",
                               work / f"{name}{round_}"),
                )  # fmt: skip
            dry = [name for name in results if ran_dry(work / f"{name}{round_}")]
            if dry:
                # an empty queue answers at once: a ratio from here on would be meaningless
                raise SystemExit(
                    f"the {' and '.join(dry)} queue ran out of tasks in round {round_ + 1}: "
                    f"no ratio; rerun with more than --tasks {args.tasks} (a side takes about "
                    "its submissions/s times --seconds slots a round, two slots per task)"
                )
            ratios.append(ratio_of(results["prefloop"], results["reference"]))
        stop(server)
        print(integrity(pf_url))
        if args.rounds > 1:
            print(
                f"median of {args.rounds} rounds: "
                + describe_ratio(
                    {key: statistics.median(r[key] for r in ratios) for key in ratios[0]}
                )
                + "; per round: "
                + ", ".join(f"{r['rate']:.2f}x" for r in ratios)
            )
    finally:
        reference_analyzed.set()
        if analyzer is not None:
            analyzer.join()
        for proc in procs:
            stop(proc)
        if not args.sqlite:
            drop_database(admin, pf_url)
            drop_database(admin, ref_url)
        # the SQLite files, the server's secret key and Locust's CSVs (all printed above)
        shutil.rmtree(work, ignore_errors=True)


def analyze_until(url: str, stopped: threading.Event, every_s: float = 5.0) -> None:
    """What prefloop's periodic sweep does for its own database on a server without
    autovacuum (``analyze_changed_tables``), for the reference's database until ``stopped``:
    the same statistics upkeep for both sides."""
    from sqlalchemy import create_engine

    from app.services.table_statistics import analyze_changed_tables

    engine = create_engine(url)
    try:
        while not stopped.wait(every_s):
            with engine.connect() as connection:
                analyze_changed_tables(connection)
    finally:
        engine.dispose()


def ratio_of(mine: dict[str, float], floor: dict[str, float]) -> dict[str, float]:
    """Prefloop's submissions/s and p99s as multiples of the reference's; printed."""
    ratio = {
        "rate": mine["rate"] / max(floor["rate"], 1e-9),
        "next_p99": mine["next_p99"] / max(floor["next_p99"], 1),
        "submit_p99": mine["submit_p99"] / max(floor["submit_p99"], 1),
    }
    print("ratio: " + describe_ratio(ratio))
    return ratio


def describe_ratio(ratio: dict[str, float]) -> str:
    return (f"prefloop at {ratio['rate']:.2f}x the reference's submissions/s; p99 next "
            f"{ratio['next_p99']:.2f}x, submit {ratio['submit_p99']:.2f}x the reference's")  # fmt: skip


if __name__ == "__main__":
    main()
