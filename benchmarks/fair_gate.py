"""One client's flood against another labeler's work, in one command (the fair gate's figures).

Serves prefloop (``prefloop serve --workers W --no-worker``) on a fresh PostgreSQL database
with ranking tasks and two labelers. A second process floods: ``--flood`` connections, each
looping ``GET /api/v1/tasks/next`` on a raw socket with the first labeler's token (or, with
``--invent``, a new made-up token every request, which the server answers 401). Meanwhile the
second labeler loops next -> submit in this process for ``--seconds``. The same run without a
flood comes first: the reference. Prints, for each, the second labeler's cycles and the p50 /
p99 / worst of a cycle's wall time, and the flooded run's ratios to the reference.

    python benchmarks/fair_gate.py [--flood 1000] [--seconds 15] [--workers 2] [--invent]
        [--app-root DIR]

``--app-root`` serves another checkout (a worktree of an older commit) for before/after.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.labeling_http import (  # noqa: E402
    PG_ADMIN_URL,
    PY,
    create_database,
    drop_database,
    free_port,
    git_head,
    seed_prefloop,
    stop,
    wait_for,
)

# the flood, run in its own process so that its work does not slow the measured client
FLOOD = """
import asyncio, secrets, sys, time

port, token, connections, seconds, invent = (
    int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), sys.argv[5] == "1"
)
codes = {}


def request(secret):
    return (
        "GET /api/v1/tasks/next?kind=ranking HTTP/1.1\\r\\nHost: bench\\r\\n"
        f"Authorization: Bearer {secret}\\r\\n\\r\\n"
    ).encode()


async def loop(stop_at):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    same = request(token)
    while time.monotonic() < stop_at:
        writer.write(request("pfl_" + secrets.token_urlsafe(24)) if invent else same)
        head = await reader.readuntil(b"\\r\\n\\r\\n")
        length = 0
        for line in head.split(b"\\r\\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        if length:
            await reader.readexactly(length)
        status = int(head[9:12])
        codes[status] = codes.get(status, 0) + 1
    writer.close()


async def main():
    stop_at = time.monotonic() + seconds
    await asyncio.gather(*[loop(stop_at) for _ in range(connections)], return_exceptions=True)
    print("flood answers:", ", ".join(f"{n} x {code}" for code, n in sorted(codes.items())))


asyncio.run(main())
"""


def labeler_cycles(base: str, token: str, seconds: float) -> tuple[list[float], dict[int, int]]:
    """next -> submit for ``seconds``: each cycle's wall time (s), and the non-2xx answers."""
    times: list[float] = []
    errors: dict[int, int] = {}
    auth = {"Authorization": f"Bearer {token}"}
    stop_at = time.monotonic() + seconds
    with httpx.Client(base_url=base, timeout=60) as client:
        while time.monotonic() < stop_at:
            started = time.monotonic()
            r = client.get("/api/v1/tasks/next?kind=ranking", headers=auth)
            if r.status_code == 200:
                task = r.json()
                shown = [c["completion_id"] for c in task["completions"]]
                random.shuffle(shown)
                body = {"ranking": [[c] for c in shown], "confirmed_order": True}
                r = client.post(f"/api/v1/tasks/{task['task_id']}/submission", headers=auth,
                                json=body)  # fmt: skip
            times.append(time.monotonic() - started)
            if r.status_code >= 300:
                errors[r.status_code] = errors.get(r.status_code, 0) + 1
    return times, errors


def describe(label: str, times: list[float], errors: dict[int, int]) -> dict[str, float]:
    ordered = sorted(times)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    figures = {"cycles": float(len(ordered)), "p50": at(0.5), "p99": at(0.99),
               "worst": ordered[-1] * 1000}  # fmt: skip
    print(
        f"{label}: {len(ordered)} cycles; a cycle's wall time p50 {figures['p50']:.0f} ms, "
        f"p99 {figures['p99']:.0f} ms, worst {figures['worst']:.0f} ms; "
        f"non-2xx answers {errors or 'none'}"
    )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flood", type=int, default=1000, help="connections flooding at once")
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--invent", action="store_true", help="a made-up token each request")
    parser.add_argument("--tasks", type=int, default=3000)
    parser.add_argument("--postgres-admin-url", default=PG_ADMIN_URL)
    parser.add_argument("--app-root", type=Path, default=ROOT)
    args = parser.parse_args()

    url = create_database(args.postgres_admin_url)
    work = Path(tempfile.mkdtemp(prefix="prefloop-fair-gate-"))
    server = None
    try:
        flooder, labeler = seed_prefloop(url, args.tasks, 2, args.app_root)
        port = free_port()
        env = dict(os.environ, PREFLOOP_DATABASE_URL=url, PREFLOOP_DATA_DIR=str(work),
                   PREFLOOP_SECRET_KEY="bench-secret-key-not-for-production-0123456789",
                   PREFLOOP_GOLD_RATE="0", PYTHONPATH=str(args.app_root))  # fmt: skip
        server = subprocess.Popen(
            [PY, "-m", "app.cli", "serve", "--port", str(port), "--workers", str(args.workers),
             "--no-worker", "--no-access-log"],
            cwd=args.app_root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        wait_for(port, server, "/healthz")
        base = f"http://127.0.0.1:{port}"
        print(f"prefloop from {args.app_root.resolve()} ({git_head(args.app_root)}), "
              f"PostgreSQL, --workers {args.workers}")  # fmt: skip
        labeler_cycles(base, labeler, 2)  # warm up: every worker process has served it
        alone = describe("the labeler alone", *labeler_cycles(base, labeler, args.seconds))
        flood = subprocess.Popen(
            [PY, "-c", FLOOD, str(port), flooder, str(args.flood), str(args.seconds + 3),
             "1" if args.invent else "0"]
        )  # fmt: skip
        time.sleep(2)  # the flood under way
        what = "made-up tokens" if args.invent else "one labeler's token"
        flooded = describe(
            f"the labeler beside {args.flood} requests in flight ({what})",
            *labeler_cycles(base, labeler, args.seconds),
        )
        flood.wait(120)
        print(
            f"ratio flooded / alone: cycles {flooded['cycles'] / alone['cycles']:.2f}x, "
            f"p50 {flooded['p50'] / alone['p50']:.1f}x, p99 {flooded['p99'] / alone['p99']:.1f}x"
        )
    finally:
        if server is not None:
            stop(server)
        drop_database(args.postgres_admin_url, url)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
