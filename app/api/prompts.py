"""JSON API of prompt intake: ingest, read, labeler-written prompts, use cases, split pins."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query

from app.api.errors import errors
from app.deps import (
    LabelerDep,
    Principal,
    ResearcherDep,
    SessionDep,
    require_role,
)
from app.models import Role
from app.schemas import DbId, Text
from app.schemas.intake import (
    IngestRequest,
    IngestResponse,
    LabelerPromptIn,
    LabelerPromptOut,
    PromptOut,
    PromptUseCaseIn,
    PromptUseCaseOut,
    SplitPinIn,
    SplitPinOut,
    UseCaseIn,
    UseCaseOut,
    UseCasePatch,
)
from app.services.admin_figures import COUNTING_RETRY_S, cached_figures
from app.services.curation import splits
from app.services.intake import ingest_prompts
from app.services.intake_labeler import build_labeler_prompt, submit_labeler_prompt
from app.services.intake_stats import data_overview
from app.services.prompts import get_prompt, prompt_as_dict, set_prompt_use_case
from app.services.use_cases import add_use_case, list_use_cases, update_use_case

router = APIRouter(prefix="/api/v1", tags=["prompts"])
ingester = require_role(Role.researcher, scope="ingest")


@router.post("/prompts", response_model=IngestResponse)
def ingest(
    body: IngestRequest,
    session: SessionDep,
    principal: Annotated[Principal, Depends(ingester)],
) -> dict[str, Any]:
    """Ingest up to 1,000 prompts; one result per prompt, in input order."""
    items = [p.model_dump() for p in body.prompts]
    return {"results": ingest_prompts(session, items, source="api", author=principal.user)}


@router.get("/prompts/{prompt_id}", response_model=PromptOut)
def read_prompt(
    prompt_id: DbId,
    principal: ResearcherDep,
    session: SessionDep,
) -> dict[str, Any]:
    """The prompt as stored: text after any redaction, split, status, PII report."""
    return prompt_as_dict(get_prompt(session, prompt_id))


@router.put("/prompts/{prompt_id}/use-case", response_model=PromptUseCaseOut)
def put_prompt_use_case(
    prompt_id: DbId,
    principal: LabelerDep,
    session: SessionDep,
    body: PromptUseCaseIn,
) -> dict[str, Any]:
    """Set or clear a prompt's use case: researchers any prompt, labelers one they hold an
    active task for (or wrote); others get 404, as for a prompt that does not exist."""
    prompt = set_prompt_use_case(session, prompt_id, body.use_case, by=principal.user)
    session.commit()
    return {"prompt_id": prompt.id, "use_case": prompt.use_case}


@router.post("/labeler-prompts", response_model=LabelerPromptOut)
def labeler_prompt(
    principal: LabelerDep,
    session: SessionDep,
    body: LabelerPromptIn,
) -> dict[str, Any]:
    """The JSON twin of the labeler's prompt form; the user ID is the caller's."""
    item = build_labeler_prompt(
        body.kind,
        text=body.text,
        instruction=body.instruction,
        examples=[e.model_dump() for e in body.examples],
        use_case=body.use_case,
    )
    result = submit_labeler_prompt(session, principal.user, item)
    prompt = get_prompt(session, result["prompt_id"]) if result["prompt_id"] else None
    return {"result": result, "prompt": prompt_as_dict(prompt) if prompt else None}


@router.get("/use-cases", response_model=list[UseCaseOut])
def use_cases(principal: LabelerDep, session: SessionDep) -> list[Any]:
    return list_use_cases(session)


@router.post("/use-cases", response_model=UseCaseOut, status_code=201, responses=errors(409))
def create_use_case(
    principal: ResearcherDep,
    session: SessionDep,
    body: UseCaseIn,
) -> Any:
    use_case = add_use_case(session, body.name, body.description)
    session.commit()
    return use_case


@router.patch("/use-cases/{use_case_id}", response_model=UseCaseOut, responses=errors(409))
def edit_use_case(
    use_case_id: DbId,
    principal: ResearcherDep,
    session: SessionDep,
    body: UseCasePatch,
) -> Any:
    use_case = update_use_case(session, use_case_id, **body.model_dump(exclude_unset=True))
    session.commit()
    return use_case


@router.get("/split-pins", response_model=list[SplitPinOut])
def split_pins(principal: ResearcherDep, session: SessionDep) -> list[Any]:
    return splits.list_pins(session)


@router.put("/split-pins/{user_id}", response_model=SplitPinOut)
def put_split_pin(
    user_id: Text,
    principal: ResearcherDep,
    session: SessionDep,
    body: SplitPinIn,
) -> dict[str, Any]:
    """Pin a client's user ID to a split (``client``: the ingesting account, default the
    caller); the user's existing prompts move with it."""
    client = principal.user.username if body.client is None else body.client.strip()
    moved = splits.pin_split(session, user_id, body.split, client)
    session.commit()
    pin = next(
        p for p in splits.list_pins(session) if p.user_id == user_id.strip() and p.client == client
    )
    return {
        "client": pin.client,
        "user_id": pin.user_id,
        "split": pin.split,
        "created_at": pin.created_at,
        "moved": moved,
    }


@router.delete("/split-pins/{user_id}", status_code=204)
def delete_split_pin(
    user_id: Text,
    principal: ResearcherDep,
    session: SessionDep,
    client: Text | None = Query(None, max_length=64, description="default: the caller"),
) -> None:
    splits.unpin_split(
        session, user_id, principal.user.username if client is None else client.strip()
    )
    session.commit()


@router.get("/data/overview", responses=errors(503))
def overview(principal: ResearcherDep, session: SessionDep) -> dict[str, Any]:
    """The admin data page's figures as JSON, from the same cache (``as_of``: when they were
    computed, up to ``PREFLOOP_ADMIN_FIGURES_TTL_S`` plus one computation ago at scale); a 503
    with ``Retry-After`` while a process's first computation of them runs."""
    figures = cached_figures(session, "data page", data_overview)
    if figures is None:
        raise HTTPException(
            503,
            "the data figures are being counted (seconds at a million prompts); retry",
            headers={"Retry-After": str(COUNTING_RETRY_S)},
        )
    return {**figures.value, "as_of": figures.computed_at}
