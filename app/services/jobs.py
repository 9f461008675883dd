"""Training jobs: validate and launch, read with progress and metrics, cancel, re-run, and the
crash sweep that fails jobs whose worker stopped sending heartbeats.

A job row is the source of truth. The worker moves it queued -> running -> succeeded | failed |
cancelled; the sweep (run periodically by every worker's heartbeat and by the web server, so
it also happens with no worker alive; reading jobs never writes) moves a running job whose
heartbeat is older than ``settings.job_heartbeat_timeout_s`` to failed, and sends the queued
jobs the broker missed. Services flush; the route, CLI command or worker commits.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel
from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session

from app.broker import send_job
from app.config import get_settings
from app.db import rows_matched, utcnow
from app.models import Job, JobMetric, JobStatus, ModelVersion, Prompt, PromptStatus, Snapshot, User
from app.schemas.job_kinds import JOB_KINDS, JobKindSpec
from app.schemas.jobs import JobKind
from app.services import Conflict, Invalid, NotFound, ServiceError, validated
from app.services.models_registry import base_model_of, check_base_model_name, require_kind

ACTIVE = (JobStatus.queued.value, JobStatus.running.value)
FINISHED = (JobStatus.succeeded.value, JobStatus.failed.value, JobStatus.cancelled.value)
RERUNNABLE = (JobStatus.failed.value, JobStatus.cancelled.value)
# a job launched this recently may still be on its way to the broker
SEND_GRACE_S = 30.0


class BrokerUnavailable(ServiceError):
    status_code = 503


# validation ------------------------------------------------------------------------------------


def kind_spec(kind: str) -> JobKindSpec:
    """The registry entry of ``kind``; a 422 naming the known kinds otherwise."""
    try:
        return JOB_KINDS[JobKind(kind)]
    except ValueError:
        known = ", ".join(JobKind)
        raise Invalid(f"unknown job kind {kind!r}; choose from {known}", field="kind") from None


def parse_params(kind: str, params: dict[str, Any]) -> BaseModel:
    """The kind's schema applied to ``params``; a 422 naming the first bad field."""
    return validated(kind_spec(kind).params, params, prefix="params.")


def _check_snapshot(session: Session, snapshot_id: int | None, dataset: str, field: str) -> None:
    if snapshot_id is None:
        return
    snapshot = session.get(Snapshot, snapshot_id)
    if snapshot is None:
        raise Invalid(f"unknown snapshot {snapshot_id}", field=field)
    if snapshot.dataset != dataset:
        raise Invalid(
            f"snapshot {snapshot_id} holds {snapshot.dataset}, expected {dataset}", field=field
        )
    if dataset == "comparisons" and snapshot.format != "rankings":
        # the reward model trains on whole rankings (all C(K,2) pairs of a prompt together)
        raise Invalid(
            f"snapshot {snapshot_id} is in {snapshot.format} format; the RM needs rankings",
            field=field,
        )


def _check_model(session: Session, value: int | str, kinds: tuple[str, ...], field: str) -> None:
    if isinstance(value, str):  # a base model by name: "tiny", a hub ID or a local path
        check_base_model_name(value, field)
    else:
        require_kind(session, value, kinds, field)


def _check_prompts(session: Session, prompt_ids: list[int], field: str) -> None:
    found = set(
        session.scalars(
            select(Prompt.id).where(
                Prompt.id.in_(prompt_ids), Prompt.status == PromptStatus.accepted.value
            )
        )
    )
    missing = [i for i in prompt_ids if i not in found]
    if missing:
        raise Invalid(f"not accepted prompts: {missing[:10]}", field=field)


def check_references(session: Session, spec: JobKindSpec, p: BaseModel) -> None:
    """The model versions, snapshots and prompts a job names exist and fit their role."""
    for name, kinds in spec.model_refs.items():
        value = getattr(p, name)
        if isinstance(value, list):
            for i, item in enumerate(value):
                _check_model(session, item, kinds, f"params.{name}.{i}")
        elif value is not None:
            _check_model(session, value, kinds, f"params.{name}")
    for name, dataset in spec.snapshot_refs.items():
        _check_snapshot(session, getattr(p, name), dataset, f"params.{name}")
    for name in spec.prompt_refs:
        if getattr(p, name):
            _check_prompts(session, getattr(p, name), f"params.{name}")


def with_model_defaults(session: Session, spec: JobKindSpec, p: BaseModel) -> BaseModel:
    """``p`` with the hyper-parameters it leaves out set to the defaults that fit its model
    (the tiny preset's own for it and the models trained from it, the method's otherwise),
    checked together by the trainer's config (e.g. PPO's top_p must be 1)."""
    if spec.trainer_config is None or spec.defaults_from is None:
        return p
    model = getattr(p, spec.defaults_from)
    model = model[0] if isinstance(model, list) else model
    names = {f.name for f in dataclasses.fields(spec.trainer_config)}
    given = {k: v for k, v in p.model_dump().items() if k in names and k in p.model_fields_set}
    try:
        config = spec.trainer_config.for_model(base_model_of(session, model), given)
    except ValueError as exc:
        name = str(exc).partition(":")[0]
        raise Invalid(str(exc), field=f"params.{name}" if name in names else "params") from None
    return p.model_copy(update=config.to_dict())


def validate_job(session: Session, kind: str, params: dict[str, Any]) -> BaseModel:
    spec = kind_spec(kind)
    parsed = parse_params(kind, params)
    check_references(session, spec, parsed)
    return with_model_defaults(session, spec, parsed)


# launching -------------------------------------------------------------------------------------


def create_job(
    session: Session,
    kind: str,
    params: dict[str, Any],
    created_by: User | None = None,
    rerun_of: Job | None = None,
    *,
    internal: bool = False,
) -> Job:
    """Validate and store a queued job (flushed). The caller commits, then calls
    ``dispatch_job``: a worker must find the row it is sent. Kinds that are not
    ``launchable`` come only from their own service (``internal``) or as re-runs."""
    if not internal and rerun_of is None and not kind_spec(kind).launchable:
        raise Invalid(
            f"{kind} jobs are created by their own endpoint (an evaluation's sampling: "
            "POST /api/v1/evaluations), not launched directly",
            field="kind",
        )
    parsed = validate_job(session, kind, params)
    job = Job(
        kind=kind,
        params=parsed.model_dump(mode="json"),
        status=JobStatus.queued.value,
        created_by_id=created_by.id if created_by else None,
        rerun_of_id=rerun_of.id if rerun_of else None,
    )
    session.add(job)
    session.flush()
    return job


def dispatch_job(session: Session, job: Job) -> None:
    """Send a committed queued job to its kind's queue and record the Celery task id
    (flushed). An unreachable broker is a 503; the job stays queued and the periodic sweep
    (``send_unsent_jobs``) sends it once the broker is back, so nothing is lost."""
    try:
        job.celery_task_id = send_job(job.id, kind_spec(job.kind).queue)
    except Exception as exc:
        raise BrokerUnavailable(
            f"job {job.id} is saved, but the job broker is unreachable "
            f"({type(exc).__name__}: {exc}); it goes to a worker as soon as the broker is back"
        ) from None
    session.flush()


def send_unsent_jobs(session: Session, now: datetime | None = None) -> list[int]:
    """Send the queued jobs that never reached the broker (it was down when they were
    launched); returns their ids. A job younger than ``SEND_GRACE_S`` is left to the request
    that is sending it right now. Stops at the first failure: the broker is still down."""
    cutoff = (now or utcnow()) - timedelta(seconds=SEND_GRACE_S)
    unsent = session.scalars(
        select(Job)
        .where(
            Job.status == JobStatus.queued.value,
            Job.celery_task_id.is_(None),
            Job.created_at < cutoff,
        )
        .order_by(Job.id)
    ).all()
    sent = []
    for job in unsent:
        try:
            dispatch_job(session, job)
        except BrokerUnavailable:
            break
        sent.append(job.id)
    return sent


def cancel_job(session: Session, job_id: int) -> Job:
    """A queued job is cancelled at once; a running one stops at its next step."""
    job = get_job(session, job_id)
    if job.status == JobStatus.queued.value:
        changed = rows_matched(
            session.execute(
                update(Job)
                .where(Job.id == job.id, Job.status == JobStatus.queued.value)
                .values(
                    status=JobStatus.cancelled.value, finished_at=utcnow(), cancel_requested=True
                )
            )
        )
        if changed:
            session.refresh(job)
            return job
        session.refresh(job)
    if job.status == JobStatus.running.value:
        job.cancel_requested = True
        session.flush()
        return job
    raise Conflict(f"job {job.id} is already {job.status}", field="status")


def rerun_job(session: Session, job_id: int, created_by: User | None) -> Job:
    job = get_job(session, job_id)
    if job.status not in RERUNNABLE:
        raise Conflict(
            f"only failed or cancelled jobs can be re-run; job {job.id} is {job.status}",
            field="status",
        )
    return create_job(session, job.kind, dict(job.params), created_by, rerun_of=job)


# crash detection -------------------------------------------------------------------------------


def sweep_stale_jobs(session: Session, now: datetime | None = None) -> list[int]:
    """Fail every running job whose heartbeat is older than the timeout; returns their ids."""
    timeout = get_settings().job_heartbeat_timeout_s
    now = now or utcnow()
    cutoff = now - timedelta(seconds=timeout)
    stale = or_(
        Job.heartbeat_at < cutoff, and_(Job.heartbeat_at.is_(None), Job.started_at < cutoff)
    )
    candidates = list(
        session.execute(
            select(Job.id, Job.worker).where(Job.status == JobStatus.running.value, stale)
        )
    )
    failed = []
    for job_id, worker in candidates:
        reason = (
            f"worker {worker or '?'} stopped sending heartbeats for more than {timeout:g}s "
            "(the worker process died or was killed); re-run the job to try again"
        )
        changed = rows_matched(
            session.execute(
                update(Job)
                .where(Job.id == job_id, Job.status == JobStatus.running.value, stale)
                .values(status=JobStatus.failed.value, error=reason, finished_at=now)
            )
        )
        if changed:
            failed.append(job_id)
    return failed


# reading ---------------------------------------------------------------------------------------


def get_job(session: Session, job_id: int) -> Job:
    job = session.get(Job, job_id)
    if job is None:
        raise NotFound(f"job {job_id} not found", field="job_id")
    session.refresh(job)
    return job


def list_jobs(session: Session, limit: int = 100, status: str | None = None) -> list[Job]:
    query = select(Job).order_by(Job.id.desc()).limit(limit)
    if status is not None:
        query = query.where(Job.status == status)
    return list(session.scalars(query))


def latest_metrics(session: Session, job_id: int) -> dict[str, float]:
    last = (
        select(func.max(JobMetric.id))
        .where(JobMetric.job_id == job_id)
        .group_by(JobMetric.name)
        .scalar_subquery()
    )
    rows = session.execute(
        select(JobMetric.name, JobMetric.value)
        .where(JobMetric.id.in_(last))
        .order_by(JobMetric.name)
    )
    return {name: value for name, value in rows}


def metric_series(session: Session, job_id: int) -> dict[str, list[tuple[int, float]]]:
    series: dict[str, list[tuple[int, float]]] = {}
    rows = session.execute(
        select(JobMetric.name, JobMetric.step, JobMetric.value)
        .where(JobMetric.job_id == job_id)
        .order_by(JobMetric.id)
    )
    for name, step, value in rows:
        series.setdefault(name, []).append((step, value))
    return series


def eta_seconds(job: Job, now: datetime | None = None) -> float | None:
    if job.status != JobStatus.running.value or not job.started_at or job.progress_step <= 0:
        return None
    elapsed = ((now or utcnow()) - job.started_at).total_seconds()
    remaining = max(job.progress_total - job.progress_step, 0)
    return round(elapsed / job.progress_step * remaining, 1)


def model_version_of(session: Session, job_id: int) -> int | None:
    return session.scalars(select(ModelVersion.id).where(ModelVersion.job_id == job_id)).first()


def job_view(session: Session, job: Job) -> dict[str, Any]:
    """The JSON API's view of a job."""
    total = job.progress_total
    creator = session.get(User, job.created_by_id) if job.created_by_id else None
    return {
        "job_id": job.id,
        "kind": job.kind,
        "status": job.status,
        "progress": {
            "step": job.progress_step,
            "total": total,
            "fraction": round(job.progress_step / total, 4) if total else 0.0,
            "eta_s": eta_seconds(job),
        },
        "metrics": latest_metrics(session, job.id),
        "model_version_id": model_version_of(session, job.id),
        "error": job.error,
        "params": job.params,
        "snapshot_ids": job.snapshot_ids or {},
        "log_tail": job.log_tail,
        "cancel_requested": job.cancel_requested,
        "rerun_of": job.rerun_of_id,
        "created_by": creator.username if creator else None,
        "worker": job.worker,
        "created_at": job.created_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
        "heartbeat_at": job.heartbeat_at,
    }
