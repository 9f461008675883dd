"""JSON API for training jobs, the model registry and workers (researcher/admin)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query

from app.api.errors import documented_body, errors
from app.deps import ResearcherDep, SessionDep, researcher
from app.schemas import DbId
from app.schemas.job_kinds import JobRequest
from app.schemas.jobs import JobCreate, JobCreated, JobOut, ModelOut, SampledTasksOut, WorkerOut
from app.services import jobs as job_service
from app.services import models_registry, sampled_tasks
from app.services.workers import list_workers

router = APIRouter(prefix="/api/v1", tags=["jobs"], dependencies=[Depends(researcher)])


@router.post(
    "/jobs",
    status_code=201,
    response_model=JobCreated,
    openapi_extra=documented_body("JobRequest", JobRequest),
)
def create_job(
    body: JobCreate,
    principal: ResearcherDep,
    session: SessionDep,
) -> dict[str, Any]:
    """Launch a job: ``{"kind": ..., "params": {...}}`` (see the schema of each kind)."""
    job = job_service.create_job(session, body.kind, body.params, principal.user)
    session.commit()  # a worker must find the row it is sent
    job_service.dispatch_job(session, job)
    session.commit()
    return {"job_id": job.id, "status": job.status}


@router.get("/jobs", response_model=list[JobOut])
def list_jobs(
    session: SessionDep,
    limit: int = Query(50, ge=1, le=500),
    status: str | None = Query(None, pattern="^(queued|running|succeeded|failed|cancelled)$"),
) -> list[dict[str, Any]]:
    return [job_service.job_view(session, j) for j in job_service.list_jobs(session, limit, status)]


@router.get("/jobs/{job_id}", response_model=JobOut)
def get_job(
    job_id: DbId,
    session: SessionDep,
) -> dict[str, Any]:
    return job_service.job_view(session, job_service.get_job(session, job_id))


@router.get("/jobs/{job_id}/metrics")
def get_job_metrics(
    job_id: DbId,
    session: SessionDep,
) -> dict[str, list[dict[str, float]]]:
    """Every metric over time: ``{name: [{"step", "value"}, ...]}``."""
    job = job_service.get_job(session, job_id)
    series = job_service.metric_series(session, job.id)
    return {name: [{"step": s, "value": v} for s, v in points] for name, points in series.items()}


@router.post("/jobs/{job_id}/cancel", response_model=JobOut, responses=errors(409))
def cancel_job(
    job_id: DbId,
    session: SessionDep,
) -> dict[str, Any]:
    """Cancel: a queued job at once, a running one at its next step (409 when finished)."""
    job = job_service.cancel_job(session, job_id)
    session.commit()
    return job_service.job_view(session, job)


@router.post("/jobs/{job_id}/release", response_model=SampledTasksOut, responses=errors(409))
def release_tasks(
    job_id: DbId,
    session: SessionDep,
) -> dict[str, int]:
    """Open a sample job's tasks held for review to labelers (409 when none is held)."""
    count = sampled_tasks.release_sampled_tasks(session, job_id)
    session.commit()
    return {"job_id": job_id, "tasks": count}


@router.post("/jobs/{job_id}/discard", response_model=SampledTasksOut, responses=errors(409))
def discard_tasks(
    job_id: DbId,
    session: SessionDep,
) -> dict[str, int]:
    """Close a sample job's tasks held for review: labelers never see them."""
    count = sampled_tasks.discard_sampled_tasks(session, job_id)
    session.commit()
    return {"job_id": job_id, "tasks": count}


@router.post(
    "/jobs/{job_id}/rerun", status_code=201, response_model=JobCreated, responses=errors(409, 503)
)
def rerun_job(
    job_id: DbId,
    principal: ResearcherDep,
    session: SessionDep,
) -> dict[str, Any]:
    """A new job with the same kind and parameters as a failed or cancelled one."""
    job = job_service.rerun_job(session, job_id, principal.user)
    session.commit()  # a worker must find the row it is sent
    job_service.dispatch_job(session, job)
    session.commit()
    return {"job_id": job.id, "status": job.status}


@router.get("/models", response_model=list[ModelOut])
def list_models(
    session: SessionDep,
    kind: str | None = Query(None, pattern="^(base|sft|rm|ppo)$"),
) -> list[dict[str, Any]]:
    return [models_registry.version_view(v) for v in models_registry.list_versions(session, kind)]


@router.post("/models/{model_version_id}/current", response_model=ModelOut)
def mark_current(
    model_version_id: DbId,
    session: SessionDep,
) -> dict[str, Any]:
    """Mark a policy (base, SFT or PPO) as the current one."""
    models_registry.get_version(session, model_version_id, field="model_version_id")
    version = models_registry.mark_current(session, model_version_id)
    session.commit()
    return models_registry.version_view(version)


@router.get("/workers", response_model=list[WorkerOut])
def workers(session: SessionDep) -> list[dict[str, Any]]:
    return list_workers(session)
