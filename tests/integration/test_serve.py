"""`prefloop serve` (what `make run` starts) on a fresh data dir: migrate, first admin, login, health."""

from __future__ import annotations

import os
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
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    output: list[str] = []
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
        login = httpx.get(f"http://127.0.0.1:{port}/login", timeout=5)
        assert login.status_code == 200 and "Log in" in login.text
        assert (tmp_path / "var" / "prefloop.sqlite").exists()
        assert (tmp_path / "var" / "secret_key").exists()
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            out, _ = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
        output.append(out)
    text = "".join(output)
    assert "Created the first admin account" in text and "password:" in text
    assert "embedded worker started" in text
