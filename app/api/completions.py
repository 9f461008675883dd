"""JSON API: completions for a prompt, and ranking tasks built from them (researchers)."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from app.api.errors import errors
from app.deps import ResearcherDep, SessionDep, researcher
from app.schemas.labeling import (
    CompletionOut,
    CompletionsIn,
    CompletionsOut,
    RankingTaskIn,
    RankingTaskOut,
)
from app.services.completions import add_completions, create_ranking_task

router = APIRouter(
    prefix="/api/v1",
    tags=["labeling"],
    dependencies=[Depends(researcher)],
    responses=errors(404, 409),  # an unknown prompt or completion; one not in a usable state
)


@router.post("/completions", status_code=201, response_model=CompletionsOut)
def post_completions(
    body: CompletionsIn,
    session: SessionDep,
) -> CompletionsOut:
    """Store model or vendor outputs for an accepted prompt (all or nothing)."""
    rows = add_completions(session, body.prompt_id, [c.model_dump() for c in body.completions])
    session.commit()
    return CompletionsOut(
        completions=[CompletionOut(completion_id=c.id, text=c.text, origin=c.origin) for c in rows]
    )


@router.post("/ranking-tasks", status_code=201, response_model=RankingTaskOut)
def post_ranking_task(
    body: RankingTaskIn,
    principal: ResearcherDep,
    session: SessionDep,
) -> RankingTaskOut:
    """A ranking task over K = 4..9 completions of one prompt; 422 says what is wrong."""
    task = create_ranking_task(
        session, body.prompt_id, body.completion_ids, body.overlap, created_by=principal.user
    )
    session.commit()
    return RankingTaskOut(
        task_id=task.id,
        kind=task.kind,
        prompt_id=task.prompt_id,
        completion_ids=[item.completion_id for item in task.items],
        k=len(task.items),
        overlap=task.overlap,
        status=task.status,
    )
