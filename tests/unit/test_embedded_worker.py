"""`prefloop serve`'s embedded worker comes back when it dies, and stops with the server."""

from __future__ import annotations

import os
import signal
import sys
import time

from app.worker.embedded import EmbeddedWorker

SLEEPER = [sys.executable, "-c", "import time; time.sleep(600)"]


def wait_for(condition, timeout: float = 10.0) -> bool:  # type: ignore[no-untyped-def]
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
