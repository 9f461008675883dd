"""Ingest throughput through the whole curation pipeline (PII included) on SQLite and PostgreSQL.

For each backend: a fresh database migrated to head, then ``--count`` generated prompts (from
``--users`` user IDs, ~10% with PII, ~5% sharing a prefix with an earlier one) go through
``ingest_prompts`` in API-sized batches of 1,000. As a reference measured in the same run, the
same number of rows is bulk-inserted straight into ``prompts`` (no curation), and the PII
filter's own rate is measured on the same texts.

    python benchmarks/ingest.py [--count 100000] [--users 2000] [--skip-postgres]

``--http``: instead, over HTTP on PostgreSQL with PII on: ``prefloop serve --workers W``
(the PII pool on every core), ``--clients`` concurrent ingest clients posting batches of
``--batch`` realistic prompts (benchmarks/texts.py: 50-4,000 characters, 10% with PII), against
a plain bulk insert of the same rows into a fresh database as the reference.

    python benchmarks/ingest.py --http [--count 20000] [--workers 2] [--clients 4] [--batch 500]
"""

from __future__ import annotations

import argparse
import os
import random
import secrets
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PG_ADMIN_URL = os.environ.get(
    "PREFLOOP_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
TOPICS = [
    "a wise frog",
    "the French revolution",
    "sourdough bread",
    "black holes",
    "tax forms",
    "a job interview",
    "quantum computing",
    "my garden",
    "a wedding speech",
    "Rust lifetimes",
]
VERBS = [
    "Write a story about",
    "Explain",
    "Summarise what you know about",
    "Give me ideas for",
    "Write a poem on",
    "List facts about",
    "Draft an email about",
]
PII = ["Contact me at jane.doe{n}@example.com.", "Call +44 20 7946 {n:04d}.",
       "My card is 4111 1111 1111 1111.", "Server 10.0.{a}.{b} is down.", "SSN 123-45-6789."]  # fmt: skip


def make_prompts(count: int, users: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    prompts: list[dict] = []
    for n in range(count):
        if prompts and rng.random() < 0.05:
            text = rng.choice(prompts)["text"] + " Please answer briefly."
        else:
            text = (f"{rng.choice(VERBS)} {rng.choice(TOPICS)}, request {n}, "
                    f"in {rng.randint(2, 9)} sentences for reader #{rng.randint(0, 10**6)}.")  # fmt: skip
            if rng.random() < 0.1:
                text += " " + rng.choice(PII).format(n=n % 10000, a=n % 250, b=n % 199)
        prompts.append({"text": text, "user_id": f"user-{rng.randrange(users)}",
                        "external_id": f"bench-{n}"})  # fmt: skip
    return prompts


def use_database(url: str) -> None:
    from app.config import get_settings
    from app.db import get_engine, get_sessionmaker

    os.environ["PREFLOOP_DATABASE_URL"] = url
    if get_sessionmaker.cache_info().currsize:
        get_engine().dispose()
    get_settings.cache_clear()
    get_engine.cache_clear()
    get_sessionmaker.cache_clear()


def bench_backend(name: str, url: str, reference_url: str, prompts: list[dict], batch: int) -> None:
    from sqlalchemy import insert

    from app.db import get_sessionmaker
    from app.migrate import upgrade_to_head
    from app.models import Prompt
    from app.services.intake import ingest_prompts

    upgrade_to_head(url)
    use_database(url)
    statuses: Counter[str] = Counter()
    with get_sessionmaker()() as session:
        started = time.perf_counter()
        for start in range(0, len(prompts), batch):
            for result in ingest_prompts(session, prompts[start : start + batch]):
                statuses[result["status"]] += 1
        pipeline_s = time.perf_counter() - started
    # reference, in a second fresh database: the same rows inserted with no curation at all
    upgrade_to_head(reference_url)
    use_database(reference_url)
    with get_sessionmaker()() as session:
        started = time.perf_counter()
        for start in range(0, len(prompts), batch):
            rows = [
                {"text": p["text"], "source": "api", "user_id": p["user_id"], "status": "accepted",
                 "external_id": p["external_id"], "split": "train"}
                for p in prompts[start : start + batch]
            ]  # fmt: skip
            session.execute(insert(Prompt), rows)
            session.commit()
        raw_s = time.perf_counter() - started
    n = len(prompts)
    print(f"{name}: {n} prompts through the pipeline in {pipeline_s:.1f}s = "
          f"{n / pipeline_s:,.0f} prompts/s  ({dict(statuses)})")  # fmt: skip
    print(f"{name}: plain bulk insert of {n} rows (reference) {n / raw_s:,.0f} rows/s; "
          f"pipeline is {raw_s / pipeline_s:.3f}x the reference rate")  # fmt: skip


def bench_pii(prompts: list[dict]) -> None:
    from app.services.curation.pii import PiiFilter, get_pii_filter

    started = time.perf_counter()
    PiiFilter()
    print(f"PII filter build (once per process): {time.perf_counter() - started:.1f}s")
    pii_filter = get_pii_filter()
    texts = [p["text"] for p in prompts]
    started = time.perf_counter()
    found = sum(pii_filter.scan(t).found for t in texts)
    elapsed = time.perf_counter() - started
    print(f"PII filter alone: {len(texts)} texts in {elapsed:.1f}s = "
          f"{len(texts) / elapsed:,.0f} texts/s ({found} with PII)")  # fmt: skip


def cpu_seconds(server_pid: int, database: str = "") -> dict[str, float]:
    """CPU seconds used so far by the server's web processes, its PII scanner processes
    (children of a fork server) and the PostgreSQL backends connected to ``database`` (other
    work on this shared machine's PostgreSQL is not counted; nor are its shared background
    writers)."""
    import psutil

    used: dict[str, float] = {}
    server = psutil.Process(server_pid)
    for proc in [server, *server.children(recursive=True)]:
        try:
            line, times = " ".join(proc.cmdline()), proc.cpu_times()
        except psutil.NoSuchProcess:
            continue
        kind = "scanners" if "forkserver" in line else "web" if "spawn" in line else "other"
        used[kind] = used.get(kind, 0.0) + times.user + times.system
    for proc in psutil.process_iter(["name"]):
        if database and proc.info["name"] == "postgres":
            try:
                line, times = " ".join(proc.cmdline()), proc.cpu_times()
            except psutil.NoSuchProcess:
                continue
            if f" {database} " in line:
                used["postgres"] = used.get("postgres", 0.0) + times.user + times.system
    return used


def wait_until_idle(server_pid: int, timeout: float = 300) -> None:
    """Until the server's processes use under 5% of a core for two seconds in a row."""
    deadline = time.monotonic() + timeout
    quiet = 0
    last = sum(v for k, v in cpu_seconds(server_pid).items() if k != "postgres")
    while quiet < 2 and time.monotonic() < deadline:
        time.sleep(1)
        now = sum(v for k, v in cpu_seconds(server_pid).items() if k != "postgres")
        quiet = quiet + 1 if now - last < 0.05 else 0
        last = now


def bench_http(args: argparse.Namespace) -> None:
    """The whole pipeline over HTTP on PostgreSQL (see the module's docstring)."""
    import json
    import threading
    import urllib.request

    from sqlalchemy import create_engine, insert, text
    from sqlalchemy.engine import make_url

    from app.models import Prompt
    from benchmarks.labeling_http import (
        create_database,
        drop_database,
        free_port,
        stop,
        wait_for,
    )
    from benchmarks.texts import realistic_text

    rng = random.Random(7)
    prompts = [
        {"text": realistic_text(rng, args.numbered_texts), "user_id": f"customer-{n % args.users}",
         "external_id": f"http-{n}"}
        for n in range(args.count)
    ]  # fmt: skip
    chars = sum(len(p["text"]) for p in prompts)
    print(f"{args.count} realistic prompts (mean {chars / args.count:,.0f} chars, "
          f"{sum('@example.com' in p['text'] for p in prompts)} with PII), batches of "
          f"{args.batch}, {args.clients} clients, {args.workers} web workers, "
          f"{os.cpu_count()} cores")  # fmt: skip
    url, reference = (
        create_database(args.postgres_admin_url),
        create_database(args.postgres_admin_url),
    )
    server = None
    try:
        from app.db import get_engine, get_sessionmaker
        from app.migrate import upgrade_to_head

        upgrade_to_head(url)

        use_database(url)
        from app.services.accounts import create_token, create_user

        with get_sessionmaker()() as s:
            create_user(s, "bench-ingest", "bench ingest password 1", "researcher")
            s.commit()
            _, token = create_token(s, "bench-ingest", "bench", ["ingest"])
            s.commit()
        get_engine().dispose()
        port = free_port()
        env = dict(os.environ, PREFLOOP_DATABASE_URL=url, PYTHONPATH=str(ROOT),
                   PREFLOOP_PROMPTS_PER_USER_CAP="100000")  # fmt: skip
        import subprocess

        server = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve", "--port", str(port), "--workers",
             str(args.workers), "--no-worker"],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        wait_for(port, server, "/login")

        def post(batch: list[dict]) -> list[dict]:
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/api/v1/prompts",
                data=json.dumps({"prompts": batch}).encode(),
                headers={"Authorization": f"Bearer {token}",
                         "Content-Type": "application/json"},
            )  # fmt: skip
            with urllib.request.urlopen(request, timeout=600) as r:
                return json.load(r)["results"]

        # steady state, not start-up: every web process's scanner pool starts its processes
        # (each imports Presidio and spaCy) in the background; wait until small ingests come
        # back quickly several times in a row (their prompts are not counted)
        started = time.perf_counter()
        quick = rounds = 0
        while quick < 3 * args.workers and rounds < 200:
            warm = [{"text": f"Warm-up request {rounds}-{i}: say hello to reader {rng.random()}",
                     "user_id": "warm-up", "external_id": f"warm-{rounds}-{i}"}
                    for i in range(4)]  # fmt: skip
            sent = time.perf_counter()
            post(warm)
            quick = quick + 1 if time.perf_counter() - sent < 0.5 else 0
            rounds += 1
        # and until the server's processes are idle: a web process whose first requests all
        # went to the other one may still be starting its scanner processes
        wait_until_idle(server.pid)
        print(f"warm-up (scanner processes starting): {time.perf_counter() - started:.1f}s, "
              f"{rounds} small requests")  # fmt: skip
        cpu_before = cpu_seconds(server.pid, make_url(url).database or "")
        batches = [prompts[i : i + args.batch] for i in range(0, len(prompts), args.batch)]
        statuses: Counter[str] = Counter()
        lock = threading.Lock()
        errors: list[str] = []

        def client() -> None:
            while True:
                with lock:
                    if not batches:
                        return
                    batch = batches.pop()
                try:
                    results = post(batch)
                except Exception as exc:  # reported below
                    errors.append(repr(exc)[:200])
                    continue
                with lock:
                    statuses.update(r["status"] for r in results)

        threads = [threading.Thread(target=client) for _ in range(args.clients)]
        done = threading.Event()
        analyses = 0

        def analyze() -> None:
            # what autovacuum does on a live system (every minute, after 10% new rows): a
            # table grown from empty in seconds is otherwise planned as if nearly empty
            nonlocal analyses
            analyzer = create_engine(url, isolation_level="AUTOCOMMIT")
            while not done.wait(args.analyze_every):
                with analyzer.connect() as conn:
                    conn.execute(text("ANALYZE"))
                analyses += 1
            analyzer.dispose()

        if args.analyze_every:
            threads.append(threading.Thread(target=analyze))
        started = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads[: args.clients]:
            t.join()
        pipeline_s = time.perf_counter() - started
        done.set()
        for t in threads[args.clients :]:
            t.join()
        cpu = {
            k: v - cpu_before.get(k, 0.0)
            for k, v in cpu_seconds(server.pid, make_url(url).database or "").items()
        }
        stop(server)
        server = None

        engine = create_engine(reference)
        upgrade_to_head(reference)
        started = time.perf_counter()
        with engine.begin() as conn:
            for i in range(0, len(prompts), args.batch):
                conn.execute(
                    insert(Prompt),
                    [{"text": p["text"], "source": "api", "user_id": p["user_id"],
                      "status": "accepted", "external_id": p["external_id"], "split": "train",
                      "kind": "api", "client": "bench"}
                     for p in prompts[i : i + args.batch]],
                )  # fmt: skip
        raw_s = time.perf_counter() - started
        engine.dispose()
        n = len(prompts)
        print(f"HTTP pipeline (PostgreSQL, PII on): {n} prompts in {pipeline_s:.1f}s = "
              f"{n / pipeline_s:,.0f} prompts/s ({dict(statuses)}; {len(errors)} failed "
              f"requests{': ' + errors[0] if errors else ''})")  # fmt: skip
        if args.analyze_every:
            print(f"ANALYZE every {args.analyze_every:g}s while ingesting: {analyses} times")
        print("CPU seconds while ingesting: " + ", ".join(f"{k} {v:.1f}" for k, v in cpu.items())
              + f" (the {os.cpu_count()} cores had {pipeline_s * (os.cpu_count() or 1):.1f}; "
              f"load average {os.getloadavg()[0]:.1f})")  # fmt: skip
        print(f"plain bulk insert of the same rows (reference): {n / raw_s:,.0f} rows/s; "
              f"the HTTP pipeline is {raw_s / pipeline_s:.3f}x the reference rate")  # fmt: skip
    finally:
        if server is not None:
            stop(server)
        use_database("sqlite://")
        drop_database(args.postgres_admin_url, url)
        drop_database(args.postgres_admin_url, reference)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100_000, help="prompts to ingest")
    parser.add_argument("--users", type=int, default=2_000, help="distinct user IDs")
    parser.add_argument("--batch", type=int, default=1_000, help="prompts per ingest call")
    parser.add_argument(
        "--pii-sample", type=int, default=20_000, help="texts for the PII filter's own rate"
    )
    parser.add_argument("--skip-postgres", action="store_true")
    parser.add_argument("--postgres-admin-url", default=PG_ADMIN_URL)
    parser.add_argument("--http", action="store_true", help="over HTTP on PostgreSQL")
    parser.add_argument("--workers", type=int, default=2, help="--http: web processes")
    parser.add_argument("--clients", type=int, default=4, help="--http: concurrent clients")
    parser.add_argument(
        "--analyze-every",
        type=float,
        default=0,
        help="--http: run ANALYZE every S seconds while ingesting (a live system's statistics)",
    )
    parser.add_argument(
        "--numbered-texts",
        action="store_true",
        help="--http: texts tagged by a 9-digit number, as before (see benchmarks/texts.py)",
    )
    args = parser.parse_args()
    # the data directory (SQLite files, the server's generated secret key), removed when done
    workdir = Path(tempfile.mkdtemp(prefix="prefloop-bench-"))
    os.environ.setdefault("PREFLOOP_DATA_DIR", str(workdir))
    os.environ.setdefault("PREFLOOP_SECRET_KEY", "bench-secret-key-not-for-production-0123")
    try:
        if args.http:
            bench_http(args)
        else:
            bench_in_process(args, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def bench_in_process(args: argparse.Namespace, workdir: Path) -> None:
    """The pipeline in-process on SQLite and PostgreSQL, and the PII filter alone."""
    prompts = make_prompts(args.count, args.users)
    print(f"{args.count} prompts, {args.users} user IDs, batches of {args.batch}")
    bench_pii(prompts[: args.pii_sample])
    bench_backend(
        "SQLite",
        f"sqlite:///{workdir / 'bench.sqlite'}",
        f"sqlite:///{workdir / 'reference.sqlite'}",
        prompts,
        args.batch,
    )
    if not args.skip_postgres:
        from sqlalchemy import create_engine, text
        from sqlalchemy.engine import make_url

        admin = create_engine(args.postgres_admin_url, isolation_level="AUTOCOMMIT")
        names = [f"prefloop_bench_{secrets.token_hex(3)}" for _ in range(2)]
        with admin.connect() as conn:
            for name in names:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            url, reference = (
                make_url(args.postgres_admin_url).set(database=n).render_as_string(False)
                for n in names
            )
            bench_backend("PostgreSQL", url, reference, prompts, args.batch)
        finally:
            use_database("sqlite://")
            with admin.connect() as conn:
                for name in names:
                    conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()


if __name__ == "__main__":
    main()
