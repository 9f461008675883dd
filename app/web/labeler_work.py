"""My work: a labeler's history of submissions and skips (today or all), and editing their own
submission while its task is still open (the same form as the task, filled with the stored
answer; `labeling.revise` decides what may change, as for `PUT /api/v1/tasks/{id}/submission`)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData

from app.deps import LabelerDep, Principal, SessionDep, any_user
from app.models import Task
from app.schemas import DbId
from app.services import ServiceError
from app.services.labeler_work import editable_submission, my_work
from app.services.labeling import revise
from app.services.task_kinds import spec_of
from app.web.labeler import _int_or_none, _posted_state, ranking_from_form, task_form_page
from app.web.templating import render

router = APIRouter(
    prefix="/labeler/work", include_in_schema=False, dependencies=[Depends(any_user)]
)


@router.get("")
def work_page(
    request: Request,
    principal: LabelerDep,
    session: SessionDep,
    period: str = "all",
    page: int = 1,
) -> Response:
    work = my_work(session, principal.user, period=period, page=page)
    return render(request, "labeler/work.html", {"work": work})


def _stored_as_posted(stored: dict[str, Any]) -> dict[str, Any]:
    """The stored answer in the shape the forms show after an error (string keys)."""
    if "text" in stored:
        return {"text": stored["text"], "ranks": {}, "likert": {}, "flags": {}}
    return {
        "text": "",
        "ranks": {str(cid): str(rank) for cid, rank, _, _ in stored["entries"]},
        "likert": {str(cid): str(lk) for cid, _, lk, _ in stored["entries"] if lk is not None},
        "flags": {str(cid): flags for cid, _, _, flags in stored["entries"]},
    }


@router.get("/{task_id}")
def edit_page(
    request: Request,
    task_id: DbId,
    principal: LabelerDep,
    session: SessionDep,
) -> Response:
    stored = editable_submission(session, principal.user, task_id)
    posted = {**_stored_as_posted(stored), "time_spent_ms": "", "skip_reason": ""}
    return task_form_page(request, session, stored["assignment"], posted=posted, editing=True)


def _revise_form(
    request: Request, session: Session, principal: Principal, task_id: int, form: FormData
) -> Response:
    stored = editable_submission(session, principal.user, task_id)
    task = session.get_one(Task, task_id)
    try:
        if spec_of(task.kind).form == "demonstration":
            payload: dict[str, Any] = {
                "text": str(form.get("text", "")),
                "time_spent_ms": _int_or_none(form.get("time_spent_ms"), "time_spent_ms"),
            }
        else:
            shown = stored["assignment"].display_order or [i.completion_id for i in task.items]
            payload = ranking_from_form(form, shown)
        revise(session, principal.user, task_id, payload)
    except ServiceError as exc:
        session.rollback()
        assignment = stored["assignment"]
        return task_form_page(
            request, session, assignment, posted=_posted_state(form), error=exc, editing=True
        )
    session.commit()
    return RedirectResponse(f"/labeler/work?edited={task_id}", status_code=303)


@router.post("/{task_id}")
async def edit_submit(
    request: Request,
    task_id: DbId,
    principal: LabelerDep,
    session: SessionDep,
) -> Response:
    form = await request.form()
    return await run_in_threadpool(_revise_form, request, session, principal, task_id, form)
