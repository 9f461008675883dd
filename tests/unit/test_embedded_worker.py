"""`prefloop serve`'s embedded worker comes back when it dies, and stops with the server."""

from __future__ import annotations

import os
import signal
import sys
import time

from app.worker.embedded import EmbeddedWorker

SLEEPER = [sys.executable, "-c", "import time; time.sleep(600)"]


def wait_for(condition, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def test_a_killed_worker_is_restarted_and_stop_ends_it() -> None:
    lines: list[str] = []
    worker = EmbeddedWorker(SLEEPER, poll_s=0.1, log=lines.append)
    worker.start()
    try:
        first = worker.process
        assert first is not None
        os.kill(first.pid, signal.SIGKILL)
        assert wait_for(lambda: worker.process is not first), lines
        assert worker.process is not None and worker.process.poll() is None
        assert any("restarted" in line for line in lines)
    finally:
        worker.stop(timeout=5)
    assert worker.process.poll() is not None


def test_a_worker_that_keeps_crashing_is_given_up_on() -> None:
    lines: list[str] = []
    crasher = [sys.executable, "-c", "raise SystemExit(3)"]
    worker = EmbeddedWorker(crasher, poll_s=0.05, max_restarts=2, window_s=60, log=lines.append)
    worker.start()
    try:
        assert wait_for(lambda: any("not restarting" in line for line in lines)), lines
        assert sum("restarted" in line for line in lines) == 2
    finally:
        worker.stop(timeout=5)


def test_the_worker_ends_itself_when_serve_dies_without_stopping_it(tmp_path) -> None:
    """serve killed or crashed (no `finally`): the worker, re-parented, stops on its own."""
    import subprocess

    child = (
        "import sys, time; from app.worker.embedded import exit_with_parent; "
        "exit_with_parent(int(sys.argv[1]), poll_s=0.05, grace_s=5); time.sleep(600)"
    )
    server = (
        "import os, subprocess, sys, time; "
        f"p = subprocess.Popen([sys.executable, '-c', {child!r}, str(os.getpid())]); "
        "print(p.pid, flush=True); time.sleep(600)"
    )
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    proc = subprocess.Popen(
        [sys.executable, "-c", server], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert proc.stdout is not None
        worker_pid = int(proc.stdout.readline())
        assert _running(worker_pid)
        proc.kill()  # the "server" crashes
        proc.wait()
        assert wait_for(lambda: not _running(worker_pid), timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as status:
            return not any(line.startswith("State:\tZ") for line in status)
    except FileNotFoundError:
        return False
