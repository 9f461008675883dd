"""JSON twin of the labeling pages: take the next task, submit it (same services as the HTML)."""

from __future__ import annotations

from functools import partial

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel

from app.api.errors import errors
from app.db import on_the_loop
from app.deps import Caller, LabelerBodyCaller, LabelerCaller, LabelerDep, SessionDep
from app.schemas import DbId
from app.schemas.labeling import NextTaskOut, RevisionIn, SubmissionIn, SubmissionOut
from app.services.labeling import describe_assignment, revise, submit
from app.services.queue import assign_next_task
from app.services.task_kinds import SHOWN_KINDS

# a route takes `principal: LabelerDep` (any signed-in user) and `session: SessionDep`; the hot
# path's two, next-task and a first submission, take `caller: LabelerCaller` (LabelerBodyCaller
# with a body) instead, resolved in the route with its session (fewer dependencies to solve
# per request), and run their work through `on_the_loop` (on SQLite, on the event loop itself);
# no router-level copy of any: FastAPI solves a cached dependency's own dependencies again for
# each copy
router = APIRouter(prefix="/api/v1/tasks", tags=["labeling"])


def _json(model: BaseModel) -> Response:
    """The labeling hot path's answer, serialised once: a model returned as such would be
    validated and serialised again against the route's ``response_model`` (which still
    documents it)."""
    return Response(model.model_dump_json(), media_type="application/json")


@router.get(
    "/next",
    response_model=NextTaskOut,
    responses={204: {"description": "nothing is waiting for you"}},
)
async def next_task(
    caller: LabelerCaller,
    kind: str | None = Query(
        None,
        description="demonstration, ranking or evaluation; any when omitted (or empty)",
        # the service checks it (a 422 naming kind); the document lists what it accepts
        json_schema_extra={"enum": ["", *SHOWN_KINDS]},
    ),
) -> Response:
    """Hold the next task for you (your unfinished one first) until `lock_expires_at`."""
    return await on_the_loop(partial(_next_task, caller, kind))


def _next_task(caller: Caller, kind: str | None) -> Response:
    with caller.session() as session:
        # looked up here, with the route's work: one trip through the thread pool at most
        principal = caller.principal(session)
        assignment = assign_next_task(session, principal.user, kind)
        if assignment is None:
            session.commit()
            return Response(status_code=204)
        described = describe_assignment(session, assignment)
        session.commit()
    return _json(NextTaskOut.model_validate(described))


@router.post("/{task_id}/submission", response_model=SubmissionOut, responses=errors(409))
async def post_submission(task_id: DbId, body: SubmissionIn, caller: LabelerBodyCaller) -> Response:
    """`{"text"}`, `{"ranking", "ratings"}` or `{"skip": {"reason"}}`; an identical repeat is a
    no-op that answers 200 again."""
    return await on_the_loop(partial(_post_submission, task_id, body, caller))


def _post_submission(task_id: int, body: SubmissionIn, caller: Caller) -> Response:
    with caller.session() as session:
        # looked up by the body-guarding middleware already, in this session, or here (a
        # bearer token on PostgreSQL: app.middleware.authenticate._route_looks_up)
        result = submit(session, caller.principal(session).user, task_id, body)
        session.commit()
    return _json(SubmissionOut.model_validate(result))


@router.put("/{task_id}/submission", response_model=SubmissionOut, responses=errors(409))
def put_submission(
    task_id: DbId,
    body: RevisionIn,
    principal: LabelerDep,
    session: SessionDep,
) -> SubmissionOut:
    """Replace your own demonstration or ranking while its task is still open (409 once it is
    done or closed; a skip is a 422); the same checks as a first submission."""
    result = revise(session, principal.user, task_id, body)
    session.commit()
    return SubmissionOut.model_validate(result)
