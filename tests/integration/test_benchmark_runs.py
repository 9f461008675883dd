"""Benchmarks run to their figures and leave no files (a small run of each; the figures
themselves are in docs/performance.md).

The in-process queue benchmark's integrity check (one ranking per filled slot, no task over its overlap) had gone stale
when adaptive overlap began adding slots, so every run ended in an AssertionError; and its
work directory (the SQLite files) stayed in the temporary directory after each run.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import create_engine, text

from tests.conftest import PG_ADMIN_URL, service_unavailable

ROOT = Path(__file__).resolve().parents[2]


def _benchmark_env(tmp_path: Path) -> dict[str, str]:
    """The environment of a benchmark run: PostgreSQL reachable, no PREFLOOP_ settings of the
    test run's, an empty temporary directory."""
    admin = create_engine(PG_ADMIN_URL)
    try:
        with admin.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        service_unavailable("PostgreSQL", exc)
    finally:
        admin.dispose()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFLOOP_")}
    env.update(TMPDIR=str(tmp_path), PYTHONPATH=str(ROOT))
    return env


def test_labeling_queue_benchmark_prints_both_databases_and_cleans_up(tmp_path: Path) -> None:
    env = _benchmark_env(tmp_path)
    done = subprocess.run(
        [sys.executable, "benchmarks/labeling_queue.py", "--tasks", "30", "--labelers", "3",
         "--postgres-admin-url", PG_ADMIN_URL],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    for backend in ("SQLite", "PostgreSQL"):
        assert f"{backend}: reference" in done.stdout, done.stdout
        assert "rankings by 3 labelers" in done.stdout
    assert list(tmp_path.iterdir()) == []


def test_fair_gate_benchmark_prints_both_runs_and_cleans_up(tmp_path: Path) -> None:
    env = _benchmark_env(tmp_path)
    done = subprocess.run(
        [sys.executable, "benchmarks/fair_gate.py", "--flood", "20", "--seconds", "2",
         "--workers", "1", "--tasks", "300", "--postgres-admin-url", PG_ADMIN_URL],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "the labeler alone:" in done.stdout, done.stdout
    assert "beside 20 requests in flight (one labeler's token)" in done.stdout
    assert "flood answers:" in done.stdout and "x 200" in done.stdout
    assert "ratio flooded / alone: cycles" in done.stdout
    # (multiprocessing's and torch's own caches of the server's processes are theirs)
    left = [p.name for p in tmp_path.iterdir() if not p.name.startswith(("pymp-", "torch"))]
    assert left == []


def test_a_load_test_whose_tasks_ran_out_prints_no_ratio(tmp_path: Path) -> None:
    """An empty queue answers 204 at once: the reference's ran dry in a three-round SQLite run
    and the script printed a ratio of 60153425655.70x. It now stops and names --tasks."""
    env = _benchmark_env(tmp_path)
    done = subprocess.run(
        [sys.executable, "benchmarks/labeling_http.py", "--sqlite", "--workers", "1",
         "--users", "5", "--seconds", "4", "--tasks", "10", "--rounds", "2"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr[-3000:]
    assert "nothing waiting (204): the load test's tasks ran out" in done.stdout, done.stdout
    assert "ran out of tasks in round 1: no ratio; rerun with more than --tasks 10" in done.stderr
    assert "ratio:" not in done.stdout
    left = [p.name for p in tmp_path.iterdir() if not p.name.startswith(("pymp-", "torch"))]
    assert left == []
