"""The Celery task that runs a job, and the worker's lifecycle hooks (heartbeat thread).

``run_job`` claims the job with an atomic ``UPDATE ... WHERE status = 'queued'``, so a
redelivered message (after a worker crash) or a cancelled job is never run twice; the final
status is written only while the job is still ``running`` (the crash sweep may have failed it).
"""

from __future__ import annotations

import logging
import traceback
from typing import Any

from celery import signals
from sqlalchemy import update

from app.broker import RUN_JOB_TASK, celery_app
from app.db import get_sessionmaker, rows_matched, utcnow
from app.models import Job, JobMetric, JobStatus
from app.schemas.job_kinds import JOB_KINDS
from app.schemas.jobs import JobKind
from app.worker import evaluation_runners  # noqa: F401  (registers the evaluation kinds)
from app.worker.heartbeat import JobBeat, WorkerBeat, forget_worker
from app.worker.reporting import JobCancelled, JobFailed, JobReporter
from app.worker.runners import (
    RUNNERS,
    JobContext,
    Outcome,
    discard_partial_output,
    finite_metrics,
    parse_stored_params,
    register,
)

log = logging.getLogger(__name__)
if set(RUNNERS) != set(JOB_KINDS):  # pragma: no cover - a programming error, caught at import
    raise RuntimeError(f"job kinds without a runner: {set(JOB_KINDS) - set(RUNNERS)}")
_worker_beat: WorkerBeat | None = None


def _claim(job_id: int, hostname: str, task_id: str | None) -> Job | None:
    with get_sessionmaker()() as session:
        now = utcnow()
        claimed = rows_matched(
            session.execute(
                update(Job)
                .where(Job.id == job_id, Job.status == JobStatus.queued.value)
                .values(
                    status=JobStatus.running.value,
                    started_at=now,
                    heartbeat_at=now,
                    worker=hostname,
                    celery_task_id=task_id,
                )
            )
        )
        session.commit()
        return session.get(Job, job_id) if claimed else None


def _finish(
    job_id: int,
    reporter: JobReporter,
    ctx: JobContext | None,
    status: str,
    error: str | None = None,
    outcome: Outcome | None = None,
) -> None:
    """Write the end state, with the model version and the job's own writes, in one
    transaction; nothing is registered if the sweep already failed the job."""
    with get_sessionmaker()() as session:
        job = session.get(Job, job_id, with_for_update=True)
        if job is None or job.status != JobStatus.running.value:
            log.warning("job %s is no longer running; its result is discarded", job_id)
            return
        reporter.flush_pending_into(session)
        job.status = status
        job.error = error
        job.finished_at = utcnow()
        job.log_tail = "\n".join(reporter.lines)
        job.progress_step = reporter.step if status != JobStatus.succeeded.value else reporter.total
        job.progress_total = reporter.total
        if ctx is not None:
            job.snapshot_ids = dict(ctx.snapshot_ids)
        if outcome is not None:
            # the final metrics join the series at the last step (the job's summary)
            for name, value in finite_metrics(outcome.metrics).items():
                session.add(
                    JobMetric(job_id=job_id, step=job.progress_step, name=name[:64], value=value)
                )
            if outcome.apply is not None:
                outcome.apply(session, job)
            version = register(session, job, outcome)
            if version is not None:
                reporter.log(f"registered model version {version.id} ({version.kind})")
                job.log_tail = "\n".join(reporter.lines)
        session.commit()


@celery_app.task(name=RUN_JOB_TASK, bind=True)
def run_job(self: Any, job_id: int) -> str:
    hostname = self.request.hostname or "worker"
    job = _claim(job_id, hostname, self.request.id)
    if job is None:
        return "skipped: not queued"
    reporter = JobReporter(job_id)
    reporter.log(f"started on {hostname}")
    ctx: JobContext | None = None
    try:
        params = parse_stored_params(job.kind, job.params)
        ctx = JobContext(job.id, job.kind, params, job.created_by_id, reporter)
        with JobBeat(job_id):
            outcome = RUNNERS[JobKind(job.kind)](ctx)
        reporter.log("finished")
        _finish(job_id, reporter, ctx, JobStatus.succeeded.value, outcome=outcome)
        return "succeeded"
    except JobCancelled:
        reporter.log("cancelled at a step boundary")
        _discard(ctx)
        _finish(job_id, reporter, ctx, JobStatus.cancelled.value)
        return "cancelled"
    except JobFailed as exc:
        reporter.log(f"failed: {exc}")
        _discard(ctx)
        _finish(job_id, reporter, ctx, JobStatus.failed.value, error=str(exc))
        return "failed"
    except Exception as exc:
        log.exception("job %s failed", job_id)
        for line in traceback.format_exc().splitlines()[-12:]:
            reporter.log(line)
        _discard(ctx)
        error = f"{type(exc).__name__}: {exc}"
        try:
            _finish(job_id, reporter, ctx, JobStatus.failed.value, error=error)
        except Exception:  # e.g. the sample job's task creation failed: record the failure
            log.exception("could not record job %s's result", job_id)
            reporter.pending = []
            _finish(job_id, reporter, ctx, JobStatus.failed.value, error=error)
        return "failed"
    finally:
        _release_accelerator_memory()


def _discard(ctx: JobContext | None) -> None:
    """No partial checkpoint outlives a failed or cancelled job (never fails the handler)."""
    if ctx is None:
        return
    try:
        discard_partial_output(ctx)
    except OSError as exc:
        ctx.reporter.log(f"could not remove the partial output: {exc}")


def _release_accelerator_memory() -> None:
    """A worker runs many jobs in one process: give the GPU memory of the last one back."""
    import gc
    import sys

    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


# worker lifecycle ------------------------------------------------------------------------------


@signals.worker_ready.connect
def _start_heartbeat(sender: Any = None, **_: Any) -> None:
    global _worker_beat
    hostname = getattr(sender, "hostname", None) or "worker"
    queues = ",".join(sorted(q.name for q in celery_app.amqp.queues.consume_from.values()))
    _worker_beat = WorkerBeat(hostname, queues)
    _worker_beat.start()


@signals.worker_shutdown.connect
def _stop_heartbeat(sender: Any = None, **_: Any) -> None:
    if _worker_beat is not None:
        _worker_beat.stop()
        forget_worker(_worker_beat.hostname)
