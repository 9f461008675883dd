"""The loop on the embedded default (SQLite + Celery's SQL transport) exactly as `make run`
starts it: `prefloop serve` with its embedded worker, driven over HTTP."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.integration.jobs_support import (
    SFT_PARAMS,
    find_sampled_task,
    ok,
    run_loop,
    seed_labels,
    succeeded,
    wait_job,
    wait_training,
)

pytestmark = pytest.mark.slow
# a job whose worker stopped beating this long is failed (the default is 60 s)
EMBEDDED_JOB_TIMEOUT_S = 10


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cli(env: dict[str, str], *args: str, stdin: str = "") -> str:
    done = subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        env=env, input=stdin, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    data_dir = tmp_path_factory.mktemp("embedded") / "var"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFLOOP_")}
    env.update(
        PREFLOOP_DATA_DIR=str(data_dir),
        PREFLOOP_WORKER_HEARTBEAT_S="0.5",
        PREFLOOP_JOB_HEARTBEAT_TIMEOUT_S=str(EMBEDDED_JOB_TIMEOUT_S),
    )
    data_dir.mkdir(parents=True)
    # accounts for the test, made with the CLI before the first start
    _cli(env, "db", "upgrade")
    tokens = {}
    for name, role in (("emb-researcher", "researcher"), ("emb-labeler", "labeler")):
        _cli(
            env,
            "users",
            "create",
            name,
            "--role",
            role,
            "--password-stdin",
            stdin="long enough pw\n",
        )
        tokens[role] = _cli(env, "tokens", "create", name).splitlines()[-1]
    port = _free_port()
    log_path = data_dir.parent / "serve.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve", "--port", str(port)],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, "server never came up"
            time.sleep(0.5)
        clients = {
            role: httpx.Client(
                base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30
            )
            for role, token in tokens.items()
        }
        yield {"clients": clients, "data_dir": data_dir, "log": log_path}
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_first_run_loads_the_demo_and_the_tiny_base_model(served: dict[str, Any]) -> None:
    researcher = served["clients"]["researcher"]
    models = ok(researcher.get("/api/v1/models"))
    assert [(m["kind"], m["path"]) for m in models] == [("base", "tiny")]
    text = served["log"].read_text()
    assert "Loaded the demo data set" in text
    # accounts existed before the first start: no demo labelers (never the published passwords)
    assert "No demo labelers" in text and "label-demo-1" not in text
    deadline = time.monotonic() + 120
    while not any(w["alive"] for w in ok(researcher.get("/api/v1/workers"))):
        assert time.monotonic() < deadline, "the embedded worker never reported"
        time.sleep(0.5)
    # the admin home: demo data in the data sets, the worker, and SFT as the next step
    panel = researcher.get("/admin/overview", headers={"HX-Request": "true"}).text
    assert "Train the SFT model" in panel and 'badge succeeded">alive' in panel
    assert "/admin/jobs/new?kind=sft" in panel


def test_loop_on_the_embedded_default(served: dict[str, Any]) -> None:
    researcher, labeler = served["clients"]["researcher"], served["clients"]["labeler"]
    seed_labels(researcher, labeler, "emb")
    (tiny,) = ok(researcher.get("/api/v1/models"))
    ids = run_loop(researcher, base_model=tiny["model_version_id"])
    sft = next(
        m for m in ok(researcher.get("/api/v1/models")) if m["model_version_id"] == ids["sft"]
    )
    assert sft["parents"] == [tiny["model_version_id"]]
    db = sqlite3.connect(f"file:{served['data_dir'] / 'prefloop.sqlite'}?mode=ro", uri=True)
    try:
        task_ids = {
            r[0] for r in db.execute("SELECT id FROM tasks WHERE job_id = ?", (ids["sample_job"],))
        }
    finally:
        db.close()
    assert len(task_ids) == 2
    task = find_sampled_task(labeler, task_ids)
    assert len(task["completions"]) == 4


def test_a_killed_embedded_worker_fails_its_job_then_it_is_restarted(
    served: dict[str, Any],
) -> None:
    """kill -9 of the embedded worker mid-job: the job ends failed (never left running), the
    worker comes back and runs the next job."""
    researcher = served["clients"]["researcher"]
    (tiny, *_) = (m for m in ok(researcher.get("/api/v1/models")) if m["kind"] == "base")
    params = dict(SFT_PARAMS, base_model=tiny["model_version_id"], epochs=200)
    job_id = ok(researcher.post("/api/v1/jobs", json={"kind": "sft", "params": params}), 201)[
        "job_id"
    ]
    job = wait_training(researcher, job_id)
    (worker,) = (w for w in ok(researcher.get("/api/v1/workers")) if w["hostname"] == job["worker"])
    os.kill(worker["pid"], signal.SIGKILL)

    job = wait_job(researcher, job_id, timeout=EMBEDDED_JOB_TIMEOUT_S * 10)
    assert job["status"] == "failed" and "heartbeat" in job["error"], job
    again = dict(SFT_PARAMS, base_model=tiny["model_version_id"])
    fresh = ok(researcher.post("/api/v1/jobs", json={"kind": "sft", "params": again}), 201)
    assert succeeded(researcher, fresh["job_id"])["model_version_id"] is not None
