"""Pieces of the worker without a broker: the progress reporter (metrics, log tail, cancel),
the accelerate-launch log tailing, the first-run steps, and the loop's next-step advice."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.db import get_sessionmaker
from app.models import Job, JobMetric, ModelVersion
from app.worker.launch import _new_rows, _progress_of
from app.worker.reporting import JobCancelled, JobReporter
from trainer.callbacks import Progress


def _running_job() -> int:
    with get_sessionmaker()() as s:
        job = Job(kind="sft", params={}, status="running")
        s.add(job)
        s.commit()
        return job.id


def test_reporter_records_progress_metrics_and_log(app_env: str) -> None:
    job_id = _running_job()
    reporter = JobReporter(job_id)
    for step in (1, 2, 3):
        reporter(Progress(step, 3, {"loss": 4.0 - step, "kl": float("nan")}))
    with get_sessionmaker()() as s:
        job = s.get_one(Job, job_id)
        assert (job.progress_step, job.progress_total) == (3, 3)  # the last step always flushes
        assert "step 3/3 loss=1" in job.log_tail and job.heartbeat_at is not None
        losses = [(m.step, m.value) for m in s.query(JobMetric).order_by(JobMetric.step)]
    assert losses == [(1, 3.0), (2, 2.0), (3, 1.0)]  # NaN is not stored


def test_reporter_records_step_counts_beyond_32_bits(app_env: str) -> None:
    """A long run's epochs x steps can pass 2**31; recording it must not fail the job."""
    job_id = _running_job()
    reporter = JobReporter(job_id)
    big = 2**40
    reporter(Progress(big, big, {"loss": 1.0}))
    with get_sessionmaker()() as s:
        job = s.get_one(Job, job_id)
        assert (job.progress_step, job.progress_total) == (big, big)
        assert [m.step for m in s.query(JobMetric)] == [big]


def test_reporter_raises_when_a_cancel_was_requested(app_env: str) -> None:
    job_id = _running_job()
    reporter = JobReporter(job_id)
    reporter(Progress(1, 10, {"loss": 1.0}))  # the first step flushes
    with get_sessionmaker()() as s:
        s.get_one(Job, job_id).cancel_requested = True
        s.commit()
    with pytest.raises(JobCancelled):  # the very next step stops, before the next flush is due
        reporter(Progress(2, 10, {"loss": 0.5}))
    with get_sessionmaker()() as s:
        assert s.get_one(Job, job_id).progress_step == 2


def test_tailing_reads_complete_lines_only(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    row = {"step": 1, "total": 4, "time": 0.1, "loss": 2.5, "message": "hi"}
    path.write_text(json.dumps(row) + "\n" + '{"step": 2, "tot')
    rows, offset = _new_rows(path, 0)
    assert rows == [row]
    progress = _progress_of(rows[0])
    assert (progress.step, progress.total, progress.metrics, progress.message) == (
        1,
        4,
        {"loss": 2.5},
        "hi",
    )
    with path.open("a") as fh:
        fh.write('al": 4, "loss": 2.0}\n')
    rows, _ = _new_rows(path, offset)
    assert rows == [{"step": 2, "total": 4, "loss": 2.0}]
    assert _new_rows(tmp_path / "missing.jsonl", 0) == ([], 0)


def test_first_run_registers_tiny_once_and_no_demo_on_a_real_database(session) -> None:
    from app.services.demo import load_demo_data, register_tiny_base

    assert register_tiny_base(session) is not None
    session.commit()
    assert register_tiny_base(session) is None
    assert [(v.kind, v.path) for v in session.query(ModelVersion)] == [("base", "tiny")]
    # app_env sets PREFLOOP_DATABASE_URL: not the embedded default, so no demo accounts
    assert load_demo_data(session) is None


def test_next_step_follows_the_loop(session) -> None:
    from app.services.loop_status import data_sets, next_step

    assert next_step(session, data_sets(session)).title == "Collect prompts"
    sets = {
        "prompts_by_split": {"train": 5, "val": 1, "test": 1},
        "sft_demonstrations": 4,
        "rm_rankings": 0,
        "ppo_prompts": 5,
        "open_demonstration_tasks": 0,
        "open_ranking_tasks": 0,
    }
    assert next_step(session, sets).href == "/admin/jobs/new?kind=sft"
    session.add(ModelVersion(kind="sft", name="sft", path="x", parent_ids=[]))
    session.commit()
    assert next_step(session, sets).href == "/admin/jobs/new?kind=sample"
    assert next_step(session, dict(sets, rm_rankings=3)).href == "/admin/jobs/new?kind=rm"
    session.add(ModelVersion(kind="rm", name="rm", path="y", parent_ids=[1]))
    session.commit()
    assert next_step(session, dict(sets, rm_rankings=3)).href == "/admin/jobs/new?kind=ppo"


def test_sample_takes_prompts_of_the_split_without_a_ranking_task(session) -> None:
    from app.models import Prompt, Task
    from app.schemas.jobs import SampleParams
    from app.worker.runners import _prompts_to_sample

    def prompt(text: str, split: str, use_case: str, status: str = "accepted") -> int:
        p = Prompt(
            text=text,
            source="api",
            user_id=f"u-{text}",
            split=split,
            status=status,
            use_case=use_case,
        )
        session.add(p)
        session.flush()
        return p.id

    chat = prompt("a", "train", "Chat")
    ranked = prompt("b", "train", "Chat")
    prompt("c", "val", "Chat")
    prompt("d", "train", "Chat", status="duplicate")
    gen = prompt("e", "train", "Generation")
    session.add(Task(kind="ranking", prompt_id=ranked))
    session.commit()

    def ids(**extra):
        params = SampleParams(**{"model_version_ids": [1], "k": 4, "prompt_count": 10, **extra})
        return [pid for pid, _ in _prompts_to_sample(session, params)]

    assert ids() == [chat, gen]
    assert ids(filters={"use_case": "Generation"}) == [gen]
    assert ids(prompt_count=1) == [chat]
    assert ids(prompt_ids=[gen, ranked]) == [gen, ranked]  # explicit prompts are taken as given


def test_a_failed_jobs_partial_output_is_removed_and_never_registered(
    app_env: str, tmp_path: Path
) -> None:
    from app.worker.reporting import JobFailed
    from app.worker.runners import JobContext, Outcome, discard_partial_output, register

    class Context(JobContext):
        @property
        def output_dir(self) -> Path:
            return tmp_path / f"{self.kind}-{self.job_id}"

    job_id = _running_job()
    reporter = JobReporter(job_id)
    sft = Context(job_id, "sft", None, None, reporter)
    (sft.output_dir / ".candidate").mkdir(parents=True)
    (sft.output_dir / "model.safetensors").write_text("half a model")
    with get_sessionmaker()() as s, pytest.raises(JobFailed, match="not a finished checkpoint"):
        register(s, s.get_one(Job, job_id), Outcome(model_path=str(sft.output_dir)))
    discard_partial_output(sft)
    assert not sft.output_dir.exists()

    # a PPO run keeps its resumable state (and metrics), nothing else
    ppo = Context(job_id + 1, "ppo", None, None, reporter)
    (ppo.output_dir / ".state").mkdir(parents=True)
    (ppo.output_dir / ".state" / "run.json").write_text("{}")
    (ppo.output_dir / "metrics.jsonl").write_text("")
    (ppo.output_dir / "model.safetensors").write_text("half a model")
    discard_partial_output(ppo)
    assert sorted(p.name for p in ppo.output_dir.iterdir()) == [".state", "metrics.jsonl"]
    assert f"prefloop train ppo --resume {ppo.output_dir}" in reporter.lines[-1]
