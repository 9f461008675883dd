"""Labeler pages: home summary, take the next task, demonstration and ranking forms, skip,
and the prompt's use case (set from the task page with htmx).

Routes are thin: they parse the form into the API's submission shape and call the same
services as app/api/tasks.py. A rejected submission re-renders the form with the error and
everything the labeler entered.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData

from app.deps import LabelerDep, Principal, SessionDep, any_user
from app.models import FLAGS, Assignment, Task
from app.schemas import DbId
from app.services import Invalid, ServiceError
from app.services.instructions import current_markdown, render_markdown
from app.services.labeler_work import labeler_counts
from app.services.labeling import describe_assignment, held_assignment, own_assignment, submit
from app.services.prompts import set_prompt_use_case
from app.services.queue import WAITING_UP_TO, assign_next_task, waiting_counts
from app.services.task_kinds import spec_of
from app.services.task_view import task_view
from app.services.use_cases import list_use_cases
from app.web.templating import render

router = APIRouter(prefix="/labeler", include_in_schema=False, dependencies=[Depends(any_user)])

LIKERT_LABELS = {1: "terrible", 4: "acceptable", 7: "excellent"}


@router.get("/summary")
def summary(
    request: Request,
    principal: LabelerDep,
    session: SessionDep,
) -> Response:
    """The home page's panel (loaded by htmx): what is waiting, and the labeler's own counts.
    Read-only (intake and the periodic sweep make demonstration tasks)."""
    waiting = waiting_counts(session, principal.user)
    counts = labeler_counts(session, principal.user)
    ctx = {
        "waiting": waiting,
        "waiting_up_to": WAITING_UP_TO,
        "counts": counts,
        "status": principal.user.labeler_status,
    }
    if request.headers.get("hx-request"):
        return render(request, "partials/labeler_summary.html", ctx)
    return render(request, "labeler/home.html", ctx)  # without JavaScript: the whole page


@router.get("/next")
def next_task(
    principal: LabelerDep,
    session: SessionDep,
    kind: str | None = None,
) -> RedirectResponse:
    assignment = assign_next_task(session, principal.user, kind)
    session.commit()
    if assignment is None:
        return RedirectResponse(f"/labeler?empty={kind or 'any'}", status_code=303)
    return RedirectResponse(f"/labeler/tasks/{assignment.task_id}", status_code=303)


def task_form_page(
    request: Request,
    session: Session,
    assignment: Assignment,
    *,
    posted: dict[str, Any] | None = None,
    error: ServiceError | None = None,
    editing: bool = False,
) -> Response:
    """The task's form (demonstration or ranking), empty, with what was posted (after an
    error), or with the labeler's stored answer to edit (``editing``, see web/labeler_work.py)."""
    task = describe_assignment(session, assignment)
    draft = "edit" if editing else "draft"
    ctx: dict[str, Any] = {
        "editing": editing,
        "form_action": f"/labeler/{'work' if editing else 'tasks'}/{assignment.task_id}",
        "task": task,
        "posted": posted,
        "error": error,
        "instructions_html": render_markdown(current_markdown(session)),
        "flags": FLAGS,
        "likert_labels": LIKERT_LABELS,
        "draft_key": f"prefloop:{draft}:{assignment.labeler_id}:{assignment.task_id}",
        "use_cases": [u.name for u in list_use_cases(session, active_only=True)],
    }
    form = spec_of(task_view(session, assignment.task_id).kind).form  # read by describe
    name = f"labeler/{form}.html"
    status = error.status_code if error is not None else 200
    return render(request, name, ctx, status_code=status)


@router.get("/tasks/{task_id}")
def task_page(
    request: Request,
    task_id: DbId,
    principal: LabelerDep,
    session: SessionDep,
) -> Response:
    assignment = held_assignment(session, principal.user, task_id)
    return task_form_page(request, session, assignment)


def _int_or_none(value: Any, field: str) -> int | None:
    if value in (None, ""):
        return None
    try:
        return int(str(value))
    except ValueError:
        raise Invalid(f"{field} must be a whole number", field=field) from None


def ranking_from_form(form: FormData, shown: list[int]) -> dict[str, Any]:
    """The form's per-completion rank numbers (equal numbers = a tie), Likert and flags, as the
    API's submission shape."""
    ranks: dict[int, int] = {}
    ratings: dict[int, dict[str, Any]] = {}
    for cid in shown:
        rank = _int_or_none(form.get(f"rank_{cid}"), f"rank_{cid}")
        if rank is not None:
            ranks[cid] = rank
        ratings[cid] = {
            "likert": _int_or_none(form.get(f"likert_{cid}"), f"likert_{cid}"),
            "flags": [str(f) for f in form.getlist(f"flags_{cid}")],
        }
    if not ranks:  # nothing moved (or no JavaScript): the order shown
        ranks = {cid: position for position, cid in enumerate(shown, start=1)}
    groups: dict[int, list[int]] = {}
    for cid, rank in sorted(ranks.items(), key=lambda kv: kv[1]):
        groups.setdefault(rank, []).append(cid)
    return {
        "ranking": [groups[r] for r in sorted(groups)],
        "ratings": ratings,
        "time_spent_ms": _int_or_none(form.get("time_spent_ms"), "time_spent_ms"),
        "confirmed_order": form.get("confirmed_order") in ("1", "on", "true"),
    }


def _posted_state(form: FormData) -> dict[str, Any]:
    """Everything the labeler sent, to put back into the form after an error."""
    return {
        "text": str(form.get("text", "")),
        "skip_reason": str(form.get("skip_reason", "")),
        "time_spent_ms": str(form.get("time_spent_ms", "")),
        "ranks": {k[5:]: str(v) for k, v in form.items() if k.startswith("rank_")},
        "likert": {k[7:]: str(v) for k, v in form.items() if k.startswith("likert_")},
        "flags": {
            key[6:]: [str(f) for f in form.getlist(key)] for key in form if key.startswith("flags_")
        },
    }


def _submit_form(
    request: Request,
    session: Session,
    principal: Principal,
    task_id: int,
    form: FormData,
    *,
    skip: bool,
) -> Response:
    assignment = own_assignment(session, principal.user, task_id)
    # the rest (expired hold, already submitted, an identical repeat from a double click) is
    # decided by `submit`; any error shows the form again with everything the labeler entered
    task = session.get_one(Task, task_id)
    try:
        if skip:
            payload: dict[str, Any] = {
                "skip": {"reason": str(form.get("skip_reason", ""))},
                "time_spent_ms": _int_or_none(form.get("time_spent_ms"), "time_spent_ms"),
            }
        elif spec_of(task.kind).form == "demonstration":
            payload = {
                "text": str(form.get("text", "")),
                "time_spent_ms": _int_or_none(form.get("time_spent_ms"), "time_spent_ms"),
            }
        else:
            shown = assignment.display_order or [item.completion_id for item in task.items]
            payload = ranking_from_form(form, shown)
        submit(session, principal.user, task_id, payload)
    except ServiceError as exc:
        session.rollback()
        return task_form_page(request, session, assignment, posted=_posted_state(form), error=exc)
    session.commit()
    return RedirectResponse(f"/labeler?saved={spec_of(task.kind).shown_as}", status_code=303)


async def _form_submission(
    request: Request, session: Session, principal: Principal, task_id: int, *, skip: bool
) -> Response:
    form = await request.form()
    # the database work is blocking: keep it off the event loop
    return await run_in_threadpool(
        _submit_form, request, session, principal, task_id, form, skip=skip
    )


@router.post("/tasks/{task_id}")
async def task_submit(
    request: Request,
    task_id: DbId,
    principal: LabelerDep,
    session: SessionDep,
) -> Response:
    return await _form_submission(request, session, principal, task_id, skip=False)


@router.post("/tasks/{task_id}/skip")
async def task_skip(
    request: Request,
    task_id: DbId,
    principal: LabelerDep,
    session: SessionDep,
) -> Response:
    return await _form_submission(request, session, principal, task_id, skip=True)


@router.post("/tasks/{task_id}/use-case")
def task_use_case(
    request: Request,
    task_id: DbId,
    principal: LabelerDep,
    session: SessionDep,
    use_case: str = Form(""),
) -> Response:
    """Set or clear the use case of the prompt of a task the labeler holds (the select on the
    task page). htmx gets a status fragment, errors included; a plain form post goes back to
    the task page."""
    try:
        assignment = held_assignment(session, principal.user, task_id)
        task = session.get_one(Task, assignment.task_id)
        prompt = set_prompt_use_case(session, task.prompt_id, use_case)
    except ServiceError as exc:
        session.rollback()
        if not request.headers.get("hx-request"):
            raise  # the app's HTML error page
        return render(
            request, "partials/use_case_status.html", {"error": exc}, status_code=exc.status_code
        )
    session.commit()
    if not request.headers.get("hx-request"):
        return RedirectResponse(f"/labeler/tasks/{task_id}", status_code=303)
    return render(request, "partials/use_case_status.html", {"use_case": prompt.use_case})
