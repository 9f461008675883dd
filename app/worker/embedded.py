"""The embedded worker of `prefloop serve`: one child process, restarted if it dies, stopped
with the server on any signal (see `cli.serve`), and ending itself when the server is gone
without stopping it (killed, crashed): `exit_with_parent`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable

WORKER_COMMAND = [
    sys.executable,
    "-m",
    "app.cli",
    "worker",
    "--queues",
    "cpu,gpu",
    "--concurrency",
    "1",
]


class EmbeddedWorker:
    """Runs ``command`` and starts it again when it exits on its own (a crash, an OOM kill).

    Jobs it was running are failed by the heartbeat sweep; restarting keeps new jobs from
    waiting in the queue forever. More than ``max_restarts`` within ``window_s`` means
    something is wrong for good: it stops trying and says so.
    """

    def __init__(
        self,
        command: list[str] | None = None,
        *,
        poll_s: float = 2.0,
        max_restarts: int = 5,
        window_s: float = 60.0,
        log: Callable[[str], None] = print,
    ) -> None:
        # the worker watches this process and stops when it disappears
        self.command = command or [*WORKER_COMMAND, "--parent-pid", str(os.getpid())]
        self.poll_s = poll_s
        self.max_restarts = max_restarts
        self.window_s = window_s
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None
        self.restarts: deque[float] = deque()
        self._stopping = threading.Event()
        self._monitor: threading.Thread | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(self.command)
        self.log(f"embedded worker started (pid {self.process.pid})")
        self._monitor = threading.Thread(target=self._watch, name="embedded-worker", daemon=True)
        self._monitor.start()

    def _watch(self) -> None:
        while not self._stopping.wait(self.poll_s):
            assert self.process is not None
            code = self.process.poll()
            if code is None or self._stopping.is_set():
                continue
            now = time.monotonic()
            while self.restarts and now - self.restarts[0] > self.window_s:
                self.restarts.popleft()
            if len(self.restarts) >= self.max_restarts:
                self.log(
                    f"embedded worker keeps exiting (last code {code}); not restarting it. "
                    "Jobs will wait in the queue: check its log and restart prefloop serve."
                )
                return
            self.restarts.append(now)
            self.process = subprocess.Popen(self.command)
            self.log(f"embedded worker exited with code {code}; restarted (pid {self.process.pid})")

    def stop(self, timeout: float = 20.0) -> None:
        self._stopping.set()
        if self._monitor is not None:
            self._monitor.join(timeout=self.poll_s + 1)
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def exit_with_parent(parent_pid: int, *, poll_s: float = 1.0, grace_s: float = 30.0) -> None:
    """In the worker: a daemon thread that stops this process once ``parent_pid`` is no longer
    its parent (the server was killed or crashed and the child was re-parented). SIGTERM first
    (Celery's warm shutdown), then SIGKILL after ``grace_s``; the heartbeat sweep fails the job
    it was running."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(poll_s)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(grace_s)
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()
