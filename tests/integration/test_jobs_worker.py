"""Jobs on PostgreSQL + Redis with a real Celery worker process (`prefloop worker`): the whole
loop from labels to new ranking tasks, and a worker killed mid-job."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from tests.conftest import TEST_SECRET_KEY, _reset_caches, truncate_all
from tests.integration.jobs_support import (
    RM_PARAMS,
    SFT_PARAMS,
    find_sampled_task,
    launch,
    ok,
    run_loop,
    seed_labels,
    succeeded,
    wait_job,
    wait_training,
)

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]
HEARTBEAT_TIMEOUT_S = 6


class Worker:
    """A `prefloop worker --queues cpu,gpu` subprocess."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env, self.log_dir = env, log_dir
        self.proc: subprocess.Popen[bytes] | None = None
        self.count = 0

    def start(self) -> None:
        self.count += 1
        log = (self.log_dir / f"worker-{self.count}.log").open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "worker", "--queues", "cpu,gpu",
             "--hostname", f"{self.env['PREFLOOP_QUEUE_PREFIX']}w{self.count}@%h"],
            env=self.env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="module")
def stack(pg_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Settings for PostgreSQL + Redis (db 1, a unique queue/key prefix) in this process and
    a worker subprocess with the same environment."""
    import redis

    data_dir = tmp_path_factory.mktemp("jobs-pg")
    prefix = f"pfl-{secrets.token_hex(4)}-"
    values = {
        "PREFLOOP_DATA_DIR": str(data_dir),
        "PREFLOOP_DATABASE_URL": pg_url,
        "PREFLOOP_BROKER_URL": redis_url,
        "PREFLOOP_RESULT_BACKEND": redis_url,
        "PREFLOOP_QUEUE_PREFIX": prefix,
        "PREFLOOP_SECRET_KEY": TEST_SECRET_KEY,
        "PREFLOOP_WORKER_HEARTBEAT_S": "0.5",
        "PREFLOOP_JOB_HEARTBEAT_TIMEOUT_S": str(HEARTBEAT_TIMEOUT_S),
    }
    # num_gpus > 1 runs under `accelerate launch`: on this CPU-only machine, two CPU processes
    accelerate_config = data_dir / "accelerate-cpu.yaml"
    accelerate_config.write_text(
        "compute_environment: LOCAL_MACHINE\ndistributed_type: MULTI_CPU\nnum_machines: 1\n"
        "machine_rank: 0\nmixed_precision: 'no'\nuse_cpu: true\n"
    )
    values["PREFLOOP_ACCELERATE_CONFIG"] = str(accelerate_config)
    truncate_all(pg_url)
    with pytest.MonkeyPatch.context() as mp:
        for key, value in values.items():
            mp.setenv(key, value)
        _reset_caches()
        worker = Worker(dict(os.environ), data_dir)
        worker.start()
        try:
            yield worker
        finally:
            worker.stop()
            _reset_caches()
            truncate_all(pg_url)
            r = redis.Redis.from_url(redis_url)
            for key in r.scan_iter(f"{prefix}*"):
                r.delete(key)


@pytest.fixture(scope="module")
def clients(stack: Worker) -> dict[str, Any]:
    from app.db import get_sessionmaker
    from app.main import create_app
    from app.services.accounts import create_token, create_user

    out = {}
    with get_sessionmaker()() as s:
        for role in ("researcher", "labeler"):
            name = f"{role}-{secrets.token_hex(3)}"
            create_user(s, name, "correct horse battery", role)
            s.flush()
            _, secret = create_token(s, name, "test", None)
            client = TestClient(create_app())
            client.headers["Authorization"] = f"Bearer {secret}"
            out[role] = client
        s.commit()
    seed_labels(out["researcher"], out["labeler"], "pg")
    return out


def test_worker_shows_up_with_its_heartbeat(stack: Worker, clients: dict[str, Any]) -> None:
    prefix = stack.env["PREFLOOP_QUEUE_PREFIX"]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        workers = ok(clients["researcher"].get("/api/v1/workers"))
        mine = [w for w in workers if w["hostname"].startswith(prefix) and w["alive"]]
        if mine:
            assert mine[0]["queues"] == f"{prefix}cpu,{prefix}gpu"
            return
        time.sleep(0.5)
    raise AssertionError("the worker never reported a heartbeat")


@pytest.fixture(scope="module")
def loop(clients: dict[str, Any]) -> dict[str, Any]:
    """SFT -> RM -> PPO-ptx -> sample, once for the tests that need trained versions."""
    return run_loop(clients["researcher"], ptx_coef=0.5, ptx_batch_size=2)


def test_loop_sft_rm_ppo_sample_reaches_labelers(
    stack: Worker, clients: dict[str, Any], loop: dict[str, Any]
) -> None:
    from app.db import get_sessionmaker
    from app.models import Completion, Task, TaskItem

    researcher, labeler = clients["researcher"], clients["labeler"]
    ids = loop
    ppo_job = ok(researcher.get("/api/v1/models"))
    ppo = next(m for m in ppo_job if m["model_version_id"] == ids["ppo"])
    assert "pretrain" in ppo["snapshot_ids"]  # the demonstrations it mixed in, as a snapshot
    with get_sessionmaker()() as s:
        task_ids = set(s.scalars(select(Task.id).where(Task.job_id == ids["sample_job"])))
        origins = set(
            s.scalars(
                select(Completion.origin)
                .join(TaskItem, TaskItem.completion_id == Completion.id)
                .where(TaskItem.task_id.in_(task_ids))
            )
        )
    assert len(task_ids) == 2
    assert origins == {f"model:{ids['ppo']}", f"model:{ids['sft']}"}
    task = find_sampled_task(labeler, task_ids)
    assert len(task["completions"]) == 4


def test_evaluation_of_ppo_against_its_sft_parent_then_rm_cv(
    stack: Worker, clients: dict[str, Any], loop: dict[str, Any]
) -> None:
    """An evaluation through sampling (RM scores, KL), simulated judging and results; then
    the RM's cross-validation by labeler group (docs/evaluation.md)."""
    from app.db import get_sessionmaker
    from app.services.accounts import create_token, create_user
    from app.simulation import preferences, simulate

    researcher, ids = clients["researcher"], loop
    ok(researcher.put("/api/v1/split-pins/eval-pg-customer", json={"split": "test"}))
    items = [
        {"text": f"Say something kind about {t}.", "user_id": "eval-pg-customer"}
        for t in ("frogs", "rain", "maps", "bread")
    ]
    ok(researcher.post("/api/v1/prompts", json={"prompts": items}))

    created = ok(
        researcher.post(
            "/api/v1/evaluations",
            json={
                "name": "ppo vs sft",
                "systems": [
                    {"model_version_id": ids["ppo"]},
                    {"model_version_id": ids["sft"], "name": "sft parent"},
                ],
                "baseline": 1,
                "prompt_count": 3,
                "overlap": 2,
                "sampling": {"max_new_tokens": 8, "max_length": 96, "batch_size": 8},
            },
        ),
        202,
    )
    evaluation_id, job_id = created["evaluation_id"], created["job_id"]
    assert job_id is not None
    state = ok(researcher.get(f"/api/v1/evaluations/{evaluation_id}"))
    assert state["status"] in ("sampling", "judging")
    job = succeeded(researcher, job_id)
    assert job["kind"] == "evaluation-sample" and job["metrics"]["outputs_sampled"] == 6

    state = ok(researcher.get(f"/api/v1/evaluations/{evaluation_id}"))
    assert state["status"] == "judging" and state["tasks"]["total"] == 3
    ppo, sft = state["systems"]
    assert ppo["model_version_id"] == ids["ppo"] and sft["name"] == "sft parent"
    # the RM the PPO version was trained against scored every output; KL is PPO's to SFT
    assert state["rm"]["model_version_id"] == ids["rm"]
    assert ppo["rm_score_mean"] is not None and sft["rm_score_mean"] is not None
    assert ppo["kl_mean"] is not None and sft["kl_mean"] == 0.0
    assert ppo["outputs"] == sft["outputs"] == 3

    # two simulated judges (new labelers, tokens through the service)
    judges = []
    from fastapi.testclient import TestClient

    from app.main import create_app

    with get_sessionmaker()() as s:
        for n in range(2):
            user = create_user(s, f"pg-judge-{n}", "correct horse battery", "labeler")
            s.flush()
            _, secret = create_token(s, user.username, "sim", None)
            client = TestClient(create_app())
            client.headers["Authorization"] = f"Bearer {secret}"
            judges.append(client)
        s.commit()
    summary = simulate(judges, preferences.length, kinds=["evaluation", "ranking"], seed=3)
    assert summary.labelers[0]["evaluation"] + summary.labelers[1]["evaluation"] == 6

    state = ok(researcher.get(f"/api/v1/evaluations/{evaluation_id}"))
    assert state["status"] == "done" and state["tasks"]["judgments"] == 6
    ppo = state["systems"][0]
    assert ppo["judgments"] == 6 and 0 <= ppo["win_rate"] <= 1
    lo, hi = ppo["win_rate_ci95"]
    assert lo <= ppo["win_rate"] <= hi
    assert state["rm"]["judgments"] == 6
    # None when every judged pair was tied by judge and RM alike (the tiny PPO and SFT models,
    # sampled with one seed, often write the same text: a tie both ways carries no information)
    agreement = state["rm"]["agreement_with_judges"]
    assert agreement is None or 0 <= agreement <= 1
    board = ok(researcher.get("/api/v1/leaderboard"))
    assert {row["model_version_id"] for row in board} == {ids["ppo"], ids["sft"]}

    # the judges also ranked the sampled training tasks: fewer labelers than folds
    cv = succeeded(
        researcher,
        launch(
            researcher,
            "rm-cv",
            dict(RM_PARAMS, sft_model_version_id=ids["sft"], folds=5),
        ),
    )
    metrics = cv["metrics"]
    # the seeding labeler and the judges who ranked a sampled task: one fold each (< 5)
    assert 2 <= metrics["folds"] == metrics["labelers"] <= 3
    assert 0 <= metrics["cv_accuracy_mean"] <= 1
    assert cv["model_version_id"] is None


def test_killed_worker_fails_the_job_then_rerun_succeeds(
    stack: Worker, clients: dict[str, Any]
) -> None:
    researcher = clients["researcher"]
    job_id = launch(researcher, "sft", dict(SFT_PARAMS, epochs=15))
    job = wait_training(researcher, job_id)
    stack.kill()
    # no worker is left: the sweep of the web server (`prefloop serve` runs this thread) fails
    # the job; reading it does not
    from app.worker.heartbeat import JobSweeper

    sweeper = JobSweeper(interval=0.5)
    sweeper.start()
    try:
        job = wait_job(researcher, job_id, timeout=HEARTBEAT_TIMEOUT_S * 10)
    finally:
        sweeper.stop()
        sweeper.join(timeout=30)
    assert job["status"] == "failed"
    assert "heartbeat" in job["error"] and "killed" in job["error"]
    assert job["model_version_id"] is None

    stack.start()
    rerun = ok(researcher.post(f"/api/v1/jobs/{job_id}/rerun"), 201)["job_id"]
    done = succeeded(researcher, rerun)
    assert done["params"] == job["params"] and done["rerun_of"] == job_id
    assert done["model_version_id"] is not None
    # the dead job stays failed even though its message may be delivered again
    assert ok(researcher.get(f"/api/v1/jobs/{job_id}"))["status"] == "failed"


def test_multi_process_job_runs_under_accelerate_launch(
    stack: Worker, clients: dict[str, Any]
) -> None:
    researcher = clients["researcher"]
    job = succeeded(researcher, launch(researcher, "sft", dict(SFT_PARAMS, num_gpus=2)))
    assert "launching trainer.sft:train_sft on 2 processes" in job["log_tail"]
    # progress streamed back from the subprocess's metrics.jsonl while it ran
    series = ok(researcher.get(f"/api/v1/jobs/{job['job_id']}/metrics"))
    assert len(series["loss"]) >= 2
    assert job["progress"]["step"] == job["progress"]["total"] > 0
    models = {m["model_version_id"]: m for m in ok(researcher.get("/api/v1/models"))}
    assert models[job["model_version_id"]]["kind"] == "sft"


def test_export_snapshot_job_runs_on_the_cpu_queue(stack: Worker, clients: dict[str, Any]) -> None:
    researcher = clients["researcher"]
    job = succeeded(
        researcher,
        launch(
            researcher,
            "export-snapshot",
            {"dataset": "comparisons", "format": "pairs", "split": "train"},
        ),
    )
    assert job["metrics"]["rows"] > 0 and "snapshot" in job["snapshot_ids"]
    assert job["worker"].startswith(stack.env["PREFLOOP_QUEUE_PREFIX"])


def test_cancel_stops_a_running_job_at_a_step(stack: Worker, clients: dict[str, Any]) -> None:
    researcher = clients["researcher"]
    job_id = launch(researcher, "sft", dict(SFT_PARAMS, epochs=200))
    wait_job(researcher, job_id, timeout=180, until=("running",))
    deadline = time.monotonic() + 120
    while ok(researcher.get(f"/api/v1/jobs/{job_id}"))["progress"]["step"] == 0:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert ok(researcher.post(f"/api/v1/jobs/{job_id}/cancel"))["cancel_requested"] is True
    job = wait_job(researcher, job_id, timeout=120)
    assert job["status"] == "cancelled" and job["model_version_id"] is None
    assert job["progress"]["step"] < job["progress"]["total"]
    assert "cancelled" in job["log_tail"]
