"""JSON API of labeler quality (researchers): gold tasks, screening decisions, agreement,
per-labeler statistics and the overlap settings. Figures are defined in docs/quality.md."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query

from app.api.errors import errors
from app.deps import ReadSessionDep, ResearcherDep, SessionDep, researcher
from app.models import User
from app.schemas import DbId
from app.schemas.quality import (
    AgreementOut,
    DecisionIn,
    GoldDemonstrationIn,
    GoldFromTaskIn,
    GoldTaskIn,
    GoldTaskOut,
    GroupIn,
    LabelerStatsOut,
    OverlapSettingsIn,
    OverlapSettingsOut,
    QualityFilters,
)
from app.services import gold, screening
from app.services.judgment_data import agreement_report, check_quality_filters
from app.services.labeler_stats import group_of, labeler_stats
from app.services.labeling_settings import (
    describe_overlap_settings,
    reset_overlap_settings,
    update_overlap_settings,
)

router = APIRouter(prefix="/api/v1", tags=["quality"], dependencies=[Depends(researcher)])

_ERRORS = errors(404, 409)

# the query string of the figures: QualityFilters is both the documented parameters and what
# the service checks (since before until, a known use case: 404) on top of the types
FiltersQuery = Annotated[QualityFilters, Query()]


# gold tasks -----------------------------------------------------------------------------------


@router.post("/gold-tasks", status_code=201, response_model=GoldTaskOut, responses=_ERRORS)
def post_gold_task(
    principal: ResearcherDep,
    session: SessionDep,
    body: GoldTaskIn,
) -> GoldTaskOut:
    """A gold ranking task over 2..9 outputs of one prompt with the reference order (and
    optionally the reference flags); `screening` puts it in the screening set."""
    task = gold.create_gold_task(
        session,
        body.prompt_id,
        body.completion_ids,
        body.reference_ranking,
        body.reference_flags,
        screening=body.screening,
        created_by=principal.user,
    )
    session.commit()
    return GoldTaskOut(task_id=task.id)


@router.put("/gold-tasks/{task_id}", response_model=GoldTaskOut, responses=_ERRORS)
def put_gold_task(
    task_id: DbId,
    principal: ResearcherDep,
    session: SessionDep,
    body: GoldFromTaskIn,
) -> GoldTaskOut:
    """Turn ranking task `task_id` into gold with this reference (or change a gold task's
    reference). Its rankings so far become gold judgments and leave the training data."""
    task = gold.make_gold(
        session, task_id, body.reference_ranking, body.reference_flags, screening=body.screening
    )
    session.commit()
    return GoldTaskOut(task_id=task.id)


@router.get("/gold-tasks", responses=_ERRORS)
def get_gold_tasks(
    principal: ResearcherDep,
    session: ReadSessionDep,
) -> list[dict[str, Any]]:
    """Every gold task: form, screening set, judgments and the labelers' mean accuracy."""
    return gold.list_gold_tasks(session)


@router.post("/gold-demonstrations", status_code=201, response_model=GoldTaskOut, responses=_ERRORS)
def post_gold_demonstration(
    principal: ResearcherDep,
    session: SessionDep,
    body: GoldDemonstrationIn,
) -> GoldTaskOut:
    """A prompt with a reference demonstration, for the screening set."""
    task = gold.create_gold_demonstration(
        session, body.prompt_id, body.reference_text, created_by=principal.user
    )
    session.commit()
    return GoldTaskOut(task_id=task.id)


# agreement and settings -----------------------------------------------------------------------


@router.get("/quality/agreement", response_model=AgreementOut, responses=_ERRORS)
def get_agreement(
    principal: ResearcherDep,
    session: ReadSessionDep,
    query: FiltersQuery,
) -> dict[str, Any]:
    """Inter-annotator agreement over the tasks two or more labelers ranked."""
    filters = check_quality_filters(session, query)
    return agreement_report(session, filters).as_dict()


@router.get("/quality/settings", response_model=OverlapSettingsOut)
def get_quality_settings(
    principal: ResearcherDep,
    session: ReadSessionDep,
) -> OverlapSettingsOut:
    return describe_overlap_settings(session)


@router.put("/quality/settings", response_model=OverlapSettingsOut, responses=_ERRORS)
def put_quality_settings(
    principal: ResearcherDep,
    session: SessionDep,
    body: OverlapSettingsIn,
) -> OverlapSettingsOut:
    """Change some overlap settings (the rest stay); new tasks use them at once."""
    result = update_overlap_settings(session, body.model_dump(exclude_none=True), by=principal.user)
    session.commit()
    return result


@router.delete("/quality/settings", response_model=OverlapSettingsOut)
def delete_quality_settings(
    principal: ResearcherDep,
    session: SessionDep,
) -> OverlapSettingsOut:
    """Back to the environment's values."""
    result = reset_overlap_settings(session)
    session.commit()
    return result


# labelers -------------------------------------------------------------------------------------


@router.get("/labelers/stats", response_model=list[LabelerStatsOut], responses=_ERRORS)
def get_labeler_stats(
    principal: ResearcherDep,
    session: ReadSessionDep,
    query: FiltersQuery,
) -> list[dict[str, Any]]:
    """One row per labeler (by id) with the figures of docs/quality.md and their outliers."""
    filters = check_quality_filters(session, query)
    return labeler_stats(session, filters)


@router.get("/labelers/{labeler_id}", responses=_ERRORS)
def get_labeler(
    labeler_id: DbId,
    principal: ResearcherDep,
    session: ReadSessionDep,
) -> dict[str, Any]:
    """A labeler's status, group, statistics, screening scores (gold rankings and
    demonstrations beside the reference), recent work and the decisions taken."""
    return screening.labeler_record(session, labeler_id)


def _decision(body: DecisionIn | None) -> DecisionIn:
    return body or DecisionIn()


@router.post("/labelers/{labeler_id}/approve", responses=_ERRORS)
def post_approve(
    labeler_id: DbId,
    principal: ResearcherDep,
    session: SessionDep,
    body: DecisionIn | None = Body(None),
) -> dict[str, Any]:
    """Approve a labeler: every task from now on (`held_out` also sets their group)."""
    decision = _decision(body)
    labeler = screening.approve(
        session, labeler_id, principal.user, decision.note, held_out=decision.held_out
    )
    session.commit()
    return _status(labeler)


@router.post("/labelers/{labeler_id}/reject", responses=_ERRORS)
def post_reject(
    labeler_id: DbId,
    principal: ResearcherDep,
    session: SessionDep,
    body: DecisionIn | None = Body(None),
) -> dict[str, Any]:
    """Reject a labeler: no more tasks; their holds go back to the queue."""
    labeler = screening.reject(session, labeler_id, principal.user, _decision(body).note)
    session.commit()
    return _status(labeler)


@router.put("/labelers/{labeler_id}/group", responses=_ERRORS)
def put_group(
    labeler_id: DbId,
    principal: ResearcherDep,
    session: SessionDep,
    body: GroupIn,
) -> dict[str, Any]:
    """Put an approved labeler in the `held_out` or the `training` group."""
    labeler = screening.set_group(session, labeler_id, body.group)
    session.commit()
    return _status(labeler)


def _status(labeler: User) -> dict[str, Any]:
    return {
        "labeler_id": labeler.id,
        "username": labeler.username,
        "status": labeler.labeler_status,
        "group": group_of(labeler),
    }
