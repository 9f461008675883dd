"""CPU per labeling cycle, prefloop against its floor, one client at a time (issue 14).

The HTTP benchmark (labeling_http.py) puts Locust, the servers and PostgreSQL on the same
cores, so its ratio moves by +-0.04 from run to run. This one measures what a cycle costs:
one client loops ``GET /api/v1/tasks/next?kind=ranking`` -> ``POST …/submission`` against
``prefloop serve --workers 1`` (and ``GET /next`` -> ``POST /submit`` against the minimal
reference app, benchmarks/reference_app.py, on its own database), and the script reads the
CPU time the web process (with its children) and PostgreSQL's processes used over the
measured cycles. Prints milliseconds of CPU per cycle for each side, the wall time per
cycle, and the ratios to the reference. The sides take turns, ``--cycles`` each, for
``--rounds`` rounds, in a rotating order, and the medians are printed: this machine's speed
drifts by tens of percent over minutes, so only figures measured in the same minutes compare.

    python benchmarks/labeling_cpu.py [--cycles 300] [--rounds 6] [--tasks 3000]
        [--app-root PATH [--app-root PATH ...]] [--sqlite]

``--app-root``: a checkout whose prefloop is served (an older commit's); give two for a
before/after in one run, each with its own database and server. PostgreSQL's figure counts
every ``postgres`` process on the machine: run it on a quiet one. ``--sqlite``: every side on
a SQLite file of its own (the embedded default), where the web process's figure is all the
cycle's CPU (SQLite runs inside it; the PostgreSQL column then reads about 0).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.labeling_http import (  # noqa: E402
    PG_ADMIN_URL,
    PY,
    access_log_off,
    cpu_seconds,
    create_database,
    drop_database,
    free_port,
    git_head,
    integrity,
    process_tree,
    seed_prefloop,
    stop,
    wait_for,
    wait_until_idle,
)

LABELERS = 10  # the client cycles through them, so holds and agreement look like a team's


def _postgres() -> list[psutil.Process]:
    return [p for p in psutil.process_iter(["name"]) if p.info["name"] == "postgres"]


class _Client:
    """Keep-alive HTTP/1.1 connection, JSON in and out."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def call(self, method: str, path: str, headers: dict[str, str], body: object = None) -> tuple[int, object]:  # fmt: skip
        payload = None if body is None else json.dumps(body)
        if payload is not None:
            headers = {**headers, "Content-Type": "application/json"}
        self.conn.request(method, path, payload, headers)
        response = self.conn.getresponse()
        raw = response.read()
        return response.status, (json.loads(raw) if raw else None)


def prefloop_cycle(client: _Client, token: str) -> None:
    auth = {"Authorization": f"Bearer {token}"}
    status, task = client.call("GET", "/api/v1/tasks/next?kind=ranking", auth)
    if status != 200:
        raise RuntimeError(f"next answered {status}: the queue ran dry (raise --tasks)")
    assert isinstance(task, dict)
    shown = [c["completion_id"] for c in task["completions"]]
    random.shuffle(shown)
    body = {"ranking": [[cid] for cid in shown], "confirmed_order": True}
    status, _ = client.call("POST", f"/api/v1/tasks/{task['task_id']}/submission", auth, body)
    if status != 200:
        raise RuntimeError(f"submit answered {status}")


def reference_cycle(client: _Client, labeler: int) -> None:
    status, task = client.call("GET", f"/next?labeler={labeler}", {})
    if status != 200:
        raise RuntimeError(f"reference next answered {status}")
    assert isinstance(task, dict)
    ranking = [[i] for i in random.sample(range(5), 5)]
    status, _ = client.call(
        "POST", f"/submit/{task['task_id']}?labeler={labeler}", {}, {"ranking": ranking}
    )
    if status != 200:
        raise RuntimeError(f"reference submit answered {status}")


def measure(
    pid: int, cycles: int, warmup: int, cycle: Callable[[int], None]
) -> tuple[dict[str, float], list[float]]:
    """Runs ``warmup`` cycles, then ``cycles`` measured ones: ms of CPU per cycle, and each
    measured cycle's wall time in ms (its tail shows the server's pauses)."""
    for n in range(warmup):
        cycle(n)
    server, postgres = process_tree(pid), _postgres()
    server_before, pg_before, wall_before = (
        cpu_seconds(server),
        cpu_seconds(postgres),
        time.perf_counter(),
    )
    each: list[float] = []
    for n in range(warmup, warmup + cycles):
        started = time.perf_counter()
        cycle(n)
        each.append((time.perf_counter() - started) * 1000)
    wall = time.perf_counter() - wall_before
    per_cycle = {
        "server": (cpu_seconds(server) - server_before) * 1000 / cycles,
        "postgres": (cpu_seconds(postgres) - pg_before) * 1000 / cycles,
        "wall": wall * 1000 / cycles,
    }
    return per_cycle, each


def _serve_prefloop(root: Path, url: str, work: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    env = dict(os.environ, PREFLOOP_DATABASE_URL=url, PREFLOOP_DATA_DIR=str(work),
               PREFLOOP_SECRET_KEY="bench-secret-key-not-for-production-0123456789",
               PREFLOOP_GOLD_RATE="0", PYTHONPATH=str(root))  # fmt: skip
    server = subprocess.Popen(
        [PY, "-m", "app.cli", "serve", "--port", str(port), "--workers", "1", "--no-worker",
         *access_log_off(root)],
        cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    return server, port


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=300, help="measured cycles per round")
    parser.add_argument("--warmup", type=int, default=200, help="cycles before the first round")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--tasks", type=int, default=3000)
    parser.add_argument("--postgres-admin-url", default=PG_ADMIN_URL)
    parser.add_argument(
        "--sqlite", action="store_true", help="every side on a SQLite file (the embedded default)"
    )
    parser.add_argument(
        "--app-root",
        type=Path,
        action="append",
        help="a checkout to serve (repeat it for before/after in one run); this one by default",
    )
    args = parser.parse_args()
    roots: list[Path] = args.app_root or [ROOT]
    needed = args.rounds * args.cycles + args.warmup + 20 * args.rounds
    if args.tasks < needed:
        parser.error(f"--tasks must be at least {needed} (rounds x cycles + warm-up)")

    admin = args.postgres_admin_url
    files = Path(tempfile.mkdtemp(prefix="prefloop-cpu-bench-db-"))

    def database(name: str) -> str:
        return f"sqlite:///{files / name}.sqlite" if args.sqlite else create_database(admin)

    urls = [database(f"prefloop-{n}") for n in range(len(roots))]
    ref_url = database("reference")
    procs: list[subprocess.Popen[bytes]] = []
    work_dirs: list[Path] = []
    try:
        from benchmarks.reference_app import seed

        # (label, process, port, cycle); the reference last
        sides: list[tuple[str, subprocess.Popen[bytes], int, Callable[[_Client, int], None]]] = []
        for n, (root, url) in enumerate(zip(roots, urls, strict=True)):
            tokens = seed_prefloop(url, args.tasks, LABELERS, root)
            work_dirs.append(Path(tempfile.mkdtemp(prefix="prefloop-cpu-bench-")))
            server, port = _serve_prefloop(root, url, work_dirs[-1])
            procs.append(server)
            label = f"prefloop {n + 1}" if len(roots) > 1 else "prefloop"
            print(f"{label}: {root.resolve()} ({git_head(root)})")

            def ours(c: _Client, k: int, tokens: list[str] = tokens) -> None:
                prefloop_cycle(c, tokens[k % LABELERS])

            sides.append((label, server, port, ours))
        seed(ref_url, args.tasks)
        ref_port = free_port()
        ref = subprocess.Popen(
            [PY, "-m", "uvicorn", "benchmarks.reference_app:app", "--port", str(ref_port),
             "--workers", "1", "--log-level", "warning", "--no-access-log"],
            cwd=ROOT, env=dict(os.environ, PREFLOOP_REFERENCE_DATABASE_URL=ref_url),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        procs.append(ref)

        def floor(c: _Client, k: int) -> None:
            reference_cycle(c, 1 + k % LABELERS)

        sides.append(("reference", ref, ref_port, floor))
        for label, proc, port, _ in sides:
            wait_for(port, proc, "/docs" if label == "reference" else "/login")
        for _, proc, _, _ in sides:
            wait_until_idle(proc)

        runs: dict[str, list[dict[str, float]]] = {label: [] for label, *_ in sides}
        cycle_ms: dict[str, list[float]] = {label: [] for label in runs}
        done = dict.fromkeys(runs, 0)
        for round_ in range(args.rounds):
            # each round in another order, so no side always follows the same one
            order = sides[round_ % len(sides) :] + sides[: round_ % len(sides)]
            for label, proc, port, run_cycle in order:
                # a new connection per round: uvicorn closes one idle for 5 s
                client, first = _Client(port), done[label]

                def step(
                    k: int,
                    client: _Client = client,
                    run_cycle: Callable[[_Client, int], None] = run_cycle,
                    first: int = first,
                ) -> None:
                    run_cycle(client, first + k)

                warmup = args.warmup if round_ == 0 else 20
                per_cycle, each = measure(proc.pid, args.cycles, warmup, step)
                runs[label].append(per_cycle)
                cycle_ms[label].extend(each)
                done[label] += warmup + args.cycles
            print(
                f"round {round_ + 1}: "
                + "; ".join(
                    f"{label} {runs[label][-1]['server']:.2f} + {runs[label][-1]['postgres']:.2f}"
                    for label in runs
                )
                + " ms (web process + PostgreSQL CPU per cycle)"
            )

        def med(label: str, key: str) -> float:
            if key == "both":
                return med(label, "server") + med(label, "postgres")
            return statistics.median(r[key] for r in runs[label])

        print(
            f"median of {args.rounds} rounds of {args.cycles} cycles, ms per cycle"
            " (ratio to the reference):"
        )
        rows = [("server", "web process CPU"), ("postgres", "PostgreSQL CPU"),
                ("both", "both CPU"), ("wall", "wall time")]  # fmt: skip
        if args.sqlite:  # no PostgreSQL: its columns would read 0
            rows = [row for row in rows if row[0] in ("server", "wall")]
        for key, what in rows:
            cells = [
                f"{label} {med(label, key):6.2f} ({med(label, key) / med('reference', key):4.2f}x)"
                for label in runs
                if label != "reference"
            ]
            print(f"  {what:16} " + "  ".join(cells) + f"  reference {med('reference', key):6.2f}")
        print("  one cycle's wall time, every measured cycle (a pause of the server shows here):")
        for label, times in cycle_ms.items():
            cuts = statistics.quantiles(times, n=1000, method="inclusive")
            print(f"    {label:12} p50 {cuts[499]:6.1f}  p99 {cuts[989]:6.1f}  p99.9 "
                  f"{cuts[998]:6.1f}  max {max(times):6.1f} ms")  # fmt: skip
        for _, proc, _, _ in sides:
            stop(proc)
        for url in urls:
            print(integrity(url))
    finally:
        for proc in procs:
            stop(proc)
        if not args.sqlite:
            for url in [*urls, ref_url]:
                drop_database(admin, url)
        shutil.rmtree(files, ignore_errors=True)
        for work in work_dirs:  # the servers' data directories (a generated secret key)
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
