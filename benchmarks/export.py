"""Export throughput on PostgreSQL: N expanded pairs streamed through the real HTTP endpoint.

Builds a fresh database with rankings of K = 4..9 (generated in SQL with generate_series),
starts uvicorn in a subprocess, streams ``GET /api/v1/export/comparisons?format=pairs`` to a
file, and prints rows/s and the server's peak RSS. As the reference, the same rows go through
PostgreSQL's own ``COPY (SELECT ...) TO STDOUT`` in the same run.

    .venv/bin/python benchmarks/export.py                 # 1,000,000 pairs
    .venv/bin/python benchmarks/export.py --pairs 100000  # smaller
"""

from __future__ import annotations

import argparse
import math
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import psutil
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ADMIN_URL = os.environ.get(
    "PREFLOOP_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
# pairs of one cycle of six rankings with K = 4, 5, ..., 9 and no ties
PAIRS_PER_CYCLE = sum(k * (k - 1) // 2 for k in range(4, 10))
LABELERS = 40

COMPLETION_TEXT = (
    "Once upon a time a wise frog lived by a quiet pond. Every morning it answered the "
    "questions of the other animals, and every evening it wrote down what it had learned. "
)


def create_database() -> str:
    name = f"prefloop_bench_{os.getpid()}_{secrets.token_hex(3)}"
    admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)


def drop_database(url: str) -> None:
    name = make_url(url).database
    admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def generate(url: str, rankings: int) -> None:
    """Prompts, completions, tasks, rankings and entries, written by SQL in a few statements."""
    statements = [
        # labelers 2..LABELERS+1; id 1 is the researcher made by the app's service below
        f"""INSERT INTO users (id, username, password_hash, role, held_out, is_active,
                must_change_password, created_at)
            SELECT i, 'labeler' || i, 'x', 'labeler', i % 10 = 0, true, false, now()
            FROM generate_series(2, {LABELERS + 1}) i""",
        f"""INSERT INTO prompts (id, text, source, kind, user_id, split, status, use_case, created_at)
            SELECT i, 'Prompt ' || i || ': write a short story about a wise frog and a pond.',
                   'api', 'api', 'customer-' || (i % 5000),
                   CASE WHEN i % 10 < 8 THEN 'train' WHEN i % 10 = 8 THEN 'val' ELSE 'test' END,
                   'accepted', 'Generation', now()
            FROM generate_series(1, {rankings}) i""",
        f"""INSERT INTO completions (id, prompt_id, text, origin, created_at)
            SELECT r * 10 + p, r, 'Answer ' || p || ' to prompt ' || r || '. ' || :text,
                   'model:bench', now()
            FROM generate_series(1, {rankings}) r,
                 LATERAL generate_series(0, 3 + r % 6) p""",
        f"""INSERT INTO tasks (id, kind, prompt_id, overlap, filled, status, created_at)
            SELECT r, 'ranking', r, 1, 1, 'done', now() FROM generate_series(1, {rankings}) r""",
        # labelers 11, 21, ... are held out: their rankings are not exported (nor copied)
        f"""INSERT INTO rankings (id, task_id, prompt_id, labeler_id, k, display_order, created_at)
            SELECT r, r, r, 2 + r % {LABELERS}, 4 + r % 6, '[]', now()
            FROM generate_series(1, {rankings}) r""",
        f"""INSERT INTO ranking_entries (ranking_id, completion_id, rank, likert, flags)
            SELECT r, r * 10 + p, p + 1, 1 + (r + p) % 7, '[]'
            FROM generate_series(1, {rankings}) r,
                 LATERAL generate_series(0, 3 + r % 6) p""",
    ]
    engine = create_engine(url)
    with engine.begin() as conn:
        for sql in statements:
            conn.execute(text(sql), {"text": COMPLETION_TEXT} if ":text" in sql else {})
        for table in ("users", "prompts", "completions", "tasks", "rankings", "ranking_entries"):
            conn.execute(
                text(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                    f"(SELECT max(id) FROM {table}))"
                )  # fmt: skip
            )
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE"))
    engine.dispose()


# the export's rows, as PostgreSQL's own COPY writes them (same filters, same order)
COPY_SQL = """
COPY (
    SELECT r.id, p.id, p.text, better_c.text, worse_c.text, p.split, r.labeler_id
    FROM rankings r
    JOIN prompts p ON p.id = r.prompt_id
    JOIN ranking_entries better ON better.ranking_id = r.id
    JOIN ranking_entries worse ON worse.ranking_id = r.id AND better.rank < worse.rank
    JOIN completions better_c ON better_c.id = better.completion_id
    JOIN completions worse_c ON worse_c.id = worse.completion_id
    WHERE p.status = 'accepted'
      AND r.labeler_id NOT IN (SELECT id FROM users WHERE held_out)
    ORDER BY r.id, better.rank, better.completion_id, worse.rank, worse.completion_id
) TO STDOUT
"""


def copy_reference(url: str, path: Path) -> tuple[int, float, int]:
    import psycopg

    conninfo = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    rows = 0
    start = time.perf_counter()
    with (
        psycopg.connect(conninfo) as conn,
        conn.cursor() as cur,
        path.open("wb") as out,
        cur.copy(COPY_SQL) as copy,
    ):
        for chunk in copy:
            out.write(chunk)
            rows += bytes(chunk).count(b"\n")
    return rows, time.perf_counter() - start, path.stat().st_size


def researcher_token(url: str, data_dir: Path) -> str:
    os.environ["PREFLOOP_DATABASE_URL"] = url
    os.environ["PREFLOOP_DATA_DIR"] = str(data_dir)
    from app.config import get_settings
    from app.db import get_engine, get_sessionmaker

    # upgrade_to_head read the settings (the SQLite default) before the URL was set
    get_settings.cache_clear()
    get_engine.cache_clear()
    get_sessionmaker.cache_clear()
    from app.services.accounts import create_token, create_user

    with get_sessionmaker()() as session:
        create_user(session, "bench-researcher", "bench-password", "researcher")
        _, secret = create_token(session, "bench-researcher", "bench", None)
        session.commit()
    return secret


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(url: str, data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "PREFLOOP_DATABASE_URL": url,
        "PREFLOOP_DATA_DIR": str(data_dir),
        "PREFLOOP_SECRET_KEY": "bench-secret-key-not-for-production-0123",
    }
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "app.asgi:app",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
        ],  # fmt: skip
        cwd=ROOT,
        env=env,
    )
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/login", timeout=1)
            return server
        except httpx.HTTPError:
            time.sleep(0.2)
    server.kill()
    raise SystemExit("the server did not start within 60 s")


class PeakRSS(threading.Thread):
    """Samples a process's resident memory every 20 ms and keeps the peak."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.process = psutil.Process(pid)
        self.peak = self.process.memory_info().rss
        self.running = True

    def run(self) -> None:
        while self.running:
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(0.02)

    def stop(self) -> int:
        self.running = False
        self.join()
        return self.peak


def stream_export(
    port: int, token: str, path: Path, params: dict[str, str]
) -> tuple[int, int, float]:
    start = time.perf_counter()
    rows = 0
    headers = {"Authorization": f"Bearer {token}"}
    with (
        httpx.stream(
            "GET", f"http://127.0.0.1:{port}/api/v1/export/comparisons", params=params,
            headers=headers, timeout=None,
        ) as response,
        path.open("wb") as out,
    ):  # fmt: skip
        response.raise_for_status()
        total = int(response.headers["x-total-count"])
        for chunk in response.iter_raw():
            out.write(chunk)
            rows += chunk.count(b"\n")
    return rows, total, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=1_000_000, help="pairs to export (about)")
    parser.add_argument("--keep", action="store_true", help="keep the database and files")
    args = parser.parse_args()
    # held-out labelers (one in ten) are generated too, so make enough for the target
    rankings = math.ceil(args.pairs / PAIRS_PER_CYCLE * 6 / 0.9)

    url = create_database()
    work = Path(tempfile.mkdtemp(prefix="prefloop-bench-export-"))
    server = None
    try:
        from app.migrate import upgrade_to_head

        upgrade_to_head(url)
        token = researcher_token(url, work)
        t0 = time.perf_counter()
        generate(url, rankings)
        print(f"generated {rankings:,} rankings (K 4..9) in {time.perf_counter() - t0:.1f} s")

        copy_rows, copy_s, copy_bytes = copy_reference(url, work / "copy.tsv")
        port = free_port()
        server = start_server(url, work, port)
        idle_rss = psutil.Process(server.pid).memory_info().rss
        results = {}
        for fmt in ("pairs", "rankings"):
            sampler = PeakRSS(server.pid)
            sampler.start()
            rows, total, seconds = stream_export(
                port, token, work / f"{fmt}.jsonl", {"format": fmt}
            )
            peak = sampler.stop()
            assert rows == total, f"{fmt}: {rows} lines but X-Total-Count {total}"
            results[fmt] = (rows, seconds, peak, (work / f"{fmt}.jsonl").stat().st_size)
        pairs, seconds, peak, size = results["pairs"]
        assert pairs == copy_rows, f"export {pairs} rows, COPY {copy_rows}"

        mib = 1024 * 1024
        print(
            f"\nexport pairs over HTTP: {pairs:,} rows in {seconds:.2f} s = "
            f"{pairs / seconds:,.0f} rows/s ({size / mib / seconds:.0f} MiB/s, {size / mib:.0f} MiB)"
        )
        print(
            f"COPY (SELECT ...) TO STDOUT: {copy_rows:,} rows in {copy_s:.2f} s = "
            f"{copy_rows / copy_s:,.0f} rows/s ({copy_bytes / mib:.0f} MiB)"
        )
        print(
            f"export / COPY throughput ratio: {(pairs / seconds) / (copy_rows / copy_s):.2f} "
            f"(COPY is {seconds / copy_s:.1f}x faster)"
        )
        print(
            f"server RSS: idle {idle_rss / mib:.0f} MiB, peak while streaming pairs "
            f"{peak / mib:.0f} MiB (+{(peak - idle_rss) / mib:.0f} MiB)"
        )
        r_rows, r_s, r_peak, r_size = results["rankings"]
        print(f"export rankings over HTTP: {r_rows:,} rows in {r_s:.2f} s = {r_rows / r_s:,.0f} "
              f"rows/s ({r_size / mib:.0f} MiB), peak RSS {r_peak / mib:.0f} MiB")  # fmt: skip
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        if not args.keep:
            drop_database(url)
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"kept database {url} and files in {work}")


if __name__ == "__main__":
    main()
