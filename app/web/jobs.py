"""Admin pages for training jobs (launch form, list, live job page), the model registry and
the loop overview on the admin home. Researchers and admins only."""

from __future__ import annotations

from contextlib import suppress
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session

from app.deps import ResearcherDep, SessionDep, researcher
from app.models import Job
from app.schemas import DbId
from app.schemas.job_kinds import POLICY_KINDS
from app.services import NotFound, ServiceError, models_registry, sampled_tasks
from app.services import jobs as job_service
from app.services.admin_figures import cached_figures
from app.services.loop_status import data_sets, next_step
from app.services.workers import list_workers
from app.web import job_charts, job_forms
from app.web.job_charts import chart_groups
from app.web.job_forms import LAUNCH_KINDS
from app.web.templating import render

router = APIRouter(include_in_schema=False, dependencies=[Depends(researcher)])


CHART_BOX = {
    "width": job_charts.WIDTH,
    "height": job_charts.HEIGHT,
    "left": job_charts.LEFT,
    "right": job_charts.RIGHT,
}


def _kind(kind: str) -> str:
    if kind not in LAUNCH_KINDS:
        raise NotFound(f"unknown job kind {kind!r}", field="kind")
    return kind


@router.get("/admin/overview")
def overview(
    request: Request,
    session: SessionDep,
) -> Response:
    """The admin home's panels (loaded by htmx): data sets, next step, workers, recent jobs."""
    figures = cached_figures(session, "data sets", data_sets)
    jobs = job_service.list_jobs(session, limit=5)
    session.commit()
    if figures is None:  # being counted: the panel reloads itself every 10 s
        return render(request, "admin/overview.html", {"counting": True})
    sets = figures.value
    return render(
        request,
        "admin/overview.html",
        {
            "sets": sets,
            "computed_at": figures.computed_at,
            "step": next_step(session, sets),
            "workers": list_workers(session),
            "jobs": jobs,
            "current": models_registry.current_policy(session),
        },
    )


@router.get("/admin/jobs")
def jobs_page(
    request: Request,
    session: SessionDep,
) -> Response:
    jobs = job_service.list_jobs(session, limit=200)
    session.commit()
    return render(
        request,
        "admin/jobs.html",
        {"jobs": jobs, "kinds": job_forms.LAUNCH_KINDS, "workers": list_workers(session)},
    )


def _form_context(
    session: Session, kind: str, form: Any = None, error: ServiceError | None = None
) -> dict[str, Any]:
    setup, hyper = job_forms.job_fields(session, kind)
    filters = job_forms.filter_fields(session, kind) if job_forms.has_filters(kind) else []
    if form is not None:
        job_forms.fill_values(setup + hyper + filters, form)
    return {
        "kind": kind,
        "kinds": job_forms.LAUNCH_KINDS,
        "setup": setup,
        "hyper": hyper,
        "filters": filters,
        "defaults_note": job_forms.defaults_note(kind),
        "base_model_name": form.get("base_model_name", "") if form is not None else "",
        "error": error,
    }


@router.get("/admin/jobs/new")
def new_job_form(
    request: Request,
    session: SessionDep,
    kind: str = "sft",
) -> Response:
    return render(request, "admin/jobs_new.html", _form_context(session, _kind(kind)))


@router.post("/admin/jobs/new")
async def launch_job(
    request: Request,
    principal: ResearcherDep,
    session: SessionDep,
    kind: str = "sft",
) -> Response:
    kind = _kind(kind)
    form = await request.form()
    setup, hyper = job_forms.job_fields(session, kind)
    params = job_forms.params_from_form(kind, form, setup, hyper)
    try:
        job = job_service.create_job(session, kind, params, principal.user)
    except ServiceError as exc:
        session.rollback()
        context = _form_context(session, kind, form, exc)
        return render(request, "admin/jobs_new.html", context, status_code=exc.status_code)
    session.commit()  # a worker must find the row it is sent
    return _dispatch_and_show(session, job)


def _dispatch_and_show(session: Session, job: Job) -> RedirectResponse:
    """Send the stored job to a worker and show its page; with the broker down the job waits
    in the queue (its page says so) and goes out when the broker is back."""
    with suppress(job_service.BrokerUnavailable):
        job_service.dispatch_job(session, job)
        session.commit()
    return RedirectResponse(f"/admin/jobs/{job.id}", status_code=303)


def _job_context(session: Session, job_id: int) -> dict[str, Any]:
    job = job_service.get_job(session, job_id)
    view = job_service.job_view(session, job)
    return {
        "job": job,
        "view": view,
        "chart_groups": chart_groups(job_service.metric_series(session, job.id)),
        "chart_box": CHART_BOX,
        "active": job.status in job_service.ACTIVE,
        "rerunnable": job.status in job_service.RERUNNABLE,
        "title": job_forms.KIND_TITLES.get(job.kind, job.kind),
        "sampled": sampled_tasks.sample_preview(session, job.id) if job.kind == "sample" else None,
    }


@router.get("/admin/jobs/{job_id}")
def job_page(
    request: Request,
    job_id: DbId,
    session: SessionDep,
) -> Response:
    return render(request, "admin/jobs_detail.html", _job_context(session, job_id))


@router.get("/admin/jobs/{job_id}/live")
def job_live(
    request: Request,
    job_id: DbId,
    session: SessionDep,
) -> Response:
    """The part of the job page that htmx polls while the job is queued or running."""
    return render(request, "admin/jobs_live.html", _job_context(session, job_id))


@router.post("/admin/jobs/{job_id}/cancel")
def cancel_job(job_id: DbId, session: SessionDep) -> RedirectResponse:
    job_service.cancel_job(session, job_id)
    session.commit()
    return RedirectResponse(f"/admin/jobs/{job_id}", status_code=303)


@router.post("/admin/jobs/{job_id}/release")
def release_tasks(job_id: DbId, session: SessionDep) -> RedirectResponse:
    count = sampled_tasks.release_sampled_tasks(session, job_id)
    session.commit()
    return RedirectResponse(f"/admin/jobs/{job_id}?released={count}", status_code=303)


@router.post("/admin/jobs/{job_id}/discard")
def discard_tasks(job_id: DbId, session: SessionDep) -> RedirectResponse:
    count = sampled_tasks.discard_sampled_tasks(session, job_id)
    session.commit()
    return RedirectResponse(f"/admin/jobs/{job_id}?discarded={count}", status_code=303)


@router.post("/admin/jobs/{job_id}/rerun")
def rerun_job(job_id: DbId, principal: ResearcherDep, session: SessionDep) -> RedirectResponse:
    job = job_service.rerun_job(session, job_id, principal.user)
    session.commit()  # a worker must find the row it is sent
    return _dispatch_and_show(session, job)


@router.get("/admin/models")
def models_page(
    request: Request,
    session: SessionDep,
) -> Response:
    versions = models_registry.list_versions(session)
    return render(
        request,
        "admin/models.html",
        {"versions": versions, "policy_kinds": POLICY_KINDS},
    )


@router.post("/admin/models/{model_version_id}/current")
def mark_current(
    model_version_id: DbId,
    session: SessionDep,
) -> RedirectResponse:
    models_registry.get_version(session, model_version_id, field="model_version_id")
    models_registry.mark_current(session, model_version_id)
    session.commit()
    return RedirectResponse("/admin/models", status_code=303)
