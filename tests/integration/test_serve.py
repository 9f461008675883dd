"""`prefloop serve` (what `make run` starts) on a fresh data dir: migrate, first admin, login,
health, and SIGTERM (what `docker stop` and systemd send) stops its embedded worker too."""

from __future__ import annotations

import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_on_embedded_default_from_scratch(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFLOOP_")}
    env["PREFLOOP_DATA_DIR"] = str(tmp_path / "var")
    log = tmp_path / "serve.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", "--port", str(port)],
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        health = None
        while time.monotonic() < deadline:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
                break
            except httpx.TransportError:
                assert proc.poll() is None, "server exited early"
                time.sleep(0.5)
        assert health is not None and health.status_code == 200, health and health.text
        body = health.json()
        assert body["status"] == "ok"
        assert body["database"]["dialect"] == "sqlite"
        assert body["broker"]["transport"] == "sqlalchemy"
        # a client that pauses between requests keeps its connection: uvicorn's default closed
        # idle connections after 5 s, and a request sent as it did so was reset (issue 14)
        kept = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            for pause in (0, 6):
                time.sleep(pause)
                kept.request("GET", "/healthz")  # the same connection (before: RemoteDisconnected)
                answer = kept.getresponse()
                answer.read()
                assert answer.status == 200
        finally:
            kept.close()
        login = httpx.get(f"http://127.0.0.1:{port}/login", timeout=5)
        assert login.status_code == 200 and "Log in" in login.text
        assert (tmp_path / "var" / "prefloop.sqlite").exists()
        assert (tmp_path / "var" / "secret_key").exists()
        match = re.search(r"embedded worker started \(pid (\d+)\)", log.read_text())
        assert match, log.read_text()
        worker_pid = int(match.group(1))
        assert _alive(worker_pid)
        proc.send_signal(signal.SIGTERM)  # the server alone, as `docker stop` does
        proc.wait(timeout=90)
        assert _wait_until(lambda: not _alive(worker_pid), 60), "the worker outlived serve"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    text = log.read_text()
    assert "Created the first admin account" in text and "password:" in text
    assert "embedded worker started" in text


def _alive(pid: int) -> bool:
    """Running (a zombie waiting to be reaped counts as gone)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            return not any(line.startswith("State:\tZ") for line in status)
    except FileNotFoundError:
        return False


def _wait_until(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return False
