"""Evaluations (researchers): create a run, read its results, the leaderboard, the export."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse

from app.api.errors import errors
from app.deps import ReadSessionDep, ResearcherDep, SessionDep, researcher
from app.schemas import DbId
from app.schemas.evaluations import (
    EvaluationCreate,
    EvaluationCreated,
    EvaluationListItem,
    EvaluationOut,
    Standing,
)
from app.services.evaluation_results import judgment_records, leaderboard, overview, results
from app.services.evaluations import create_evaluation, get_evaluation, list_evaluations

# researchers only; results and exports read on a read-only session (no SQLite write lock
# while the bootstrap runs)
router = APIRouter(tags=["evaluation"], dependencies=[Depends(researcher)])


@router.post(
    "/api/v1/evaluations",
    status_code=202,
    response_model=EvaluationCreated,
    responses=errors(404, 503),
)
def post_evaluation(
    body: EvaluationCreate, principal: ResearcherDep, session: SessionDep
) -> EvaluationCreated:
    """Compare 2..9 systems (registered model versions, or a name plus uploaded
    `{"prompt_id", "text"}` outputs) against a baseline (an index into `systems`). Model
    versions are sampled by a job on the gpu queue (`job_id`), after which the evaluation
    tasks appear; with uploaded outputs only, the tasks exist when this returns."""
    evaluation, job = create_evaluation(session, body, principal.user)
    return EvaluationCreated(evaluation_id=evaluation.id, job_id=job.id if job else None)


@router.get("/api/v1/evaluations", response_model=list[EvaluationListItem])
def get_evaluations(session: ReadSessionDep) -> list[EvaluationListItem]:
    """Every evaluation, newest first, with its judging progress."""
    return [
        EvaluationListItem.model_validate(overview(session, e)) for e in list_evaluations(session)
    ]


@router.get("/api/v1/evaluations/{evaluation_id}", response_model=EvaluationOut)
def get_evaluation_results(evaluation_id: DbId, session: ReadSessionDep) -> EvaluationOut:
    """Progress and results: win rates against the baseline with 95% bootstrap intervals
    over prompts (ties count half), Likert means and distributions, flag rates, by use case
    and by judge group, and the reward model's view; each figure with its judgment count."""
    return EvaluationOut.model_validate(results(session, evaluation_id))


@router.get("/api/v1/leaderboard", response_model=list[Standing])
def get_leaderboard(session: ReadSessionDep) -> list[Standing]:
    """Bradley–Terry strengths of every system ever evaluated, best first: `strength` is the
    modelled chance of beating an average system of the board, with a 95% bootstrap interval."""
    return [Standing.model_validate(row) for row in leaderboard(session)]


@router.get(
    "/api/v1/export/evaluations",
    responses={
        **errors(404),
        200: {
            "description": "one JSON record per judgment (NDJSON, or a JSON array)",
            "content": {
                "application/x-ndjson": {"schema": {"type": "string"}},
                "application/json": {"schema": {"type": "array", "items": {"type": "object"}}},
            },
        },
    },
    tags=["export"],
)
def export_evaluations(
    evaluation_id: DbId | None = Query(None, description="only this evaluation's judgments"),
    output: Literal["ndjson", "json"] | None = Query(
        None, description="ndjson (default) or json (an array)"
    ),
    *,
    session: ReadSessionDep,
) -> StreamingResponse:
    """One record per judgment: the prompt, each output with its system's name, rank (1 =
    best), Likert score, flags and shown position, and the judge's group (held_out or
    training). Evaluation judgments never appear in the training exports."""
    if evaluation_id is not None:
        get_evaluation(session, evaluation_id)
    records = list(judgment_records(session, evaluation_id))
    session.rollback()  # end the read before the response streams

    def ndjson() -> Iterator[bytes]:
        for record in records:
            yield (json.dumps(record, ensure_ascii=False) + "\n").encode()

    def array() -> Iterator[bytes]:
        yield json.dumps(records, ensure_ascii=False).encode()

    media = "application/json" if output == "json" else "application/x-ndjson"
    name = f"evaluations-{evaluation_id}" if evaluation_id else "evaluations"
    return StreamingResponse(
        array() if output == "json" else ndjson(),
        media_type=media,
        headers={
            "X-Total-Count": str(len(records)),
            "Content-Disposition": f'attachment; filename="{name}.{"json" if output == "json" else "jsonl"}"',
        },
    )
