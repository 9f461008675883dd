"""Evaluation pages: the list with the create form, an evaluation's results, the leaderboard."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session

from app import json_values
from app.config import get_settings
from app.deps import ReadSessionDep, ResearcherDep, SessionDep, researcher
from app.models import FLAGS
from app.schemas import DbId
from app.schemas.evaluations import MAX_OUTPUTS
from app.schemas.job_kinds import POLICY_KINDS
from app.services import Invalid, ServiceError
from app.services.evaluation_results import leaderboard, overview, results
from app.services.evaluations import create_evaluation, list_evaluations
from app.services.models_registry import list_versions
from app.services.use_cases import list_use_cases
from app.web.evaluation_charts import win_chart
from app.web.templating import render

router = APIRouter(include_in_schema=False, dependencies=[Depends(researcher)])
UPLOAD_SLOTS = 2


def _form_context(
    session: Session, form: Any = None, error: ServiceError | None = None
) -> dict[str, Any]:
    values = dict(form) if form is not None else {}
    return {
        "evaluations": [overview(session, e) for e in list_evaluations(session)],
        "versions": list_versions(session, POLICY_KINDS),
        "use_cases": [u.name for u in list_use_cases(session, active_only=True)],
        "chosen": form.getlist("model_version_ids") if form is not None else [],
        "values": values,
        "upload_slots": range(UPLOAD_SLOTS),
        "error": error,
    }


def _outputs(text: str, field: str) -> list[dict[str, Any]]:
    """Uploaded outputs pasted as JSON lines (or a JSON array) of {"prompt_id", "text"}."""
    text = text.strip()
    lines = text.count("\n") + 1
    if lines > MAX_OUTPUTS and not text.startswith("["):
        raise Invalid(f"at most {MAX_OUTPUTS} outputs per system ({lines} lines)", field=field)
    # counted before parsing, as the JSON API's bodies are (app.middleware): parsing holds
    # the web process; JSON lines are one value each beyond what the count sees
    limit = get_settings().max_json_values
    if not json_values.at_most(text.encode(), limit - (0 if text.startswith("[") else lines)):
        raise Invalid(json_values.too_many_detail(limit, "these outputs hold"), field=field)
    try:
        if text.startswith("["):
            rows = json.loads(text)
        else:
            rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    except json.JSONDecodeError as exc:
        raise Invalid(f"outputs are not JSON lines: {exc}", field=field) from None
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise Invalid('give one {"prompt_id", "text"} object per line', field=field)
    return rows


def payload_from_form(form: Any) -> dict[str, Any]:
    """The JSON API's body from the create form (chosen model versions, then the uploaded
    systems, in that order; the baseline names one of them)."""
    systems: list[dict[str, Any]] = []
    keys: list[str] = []
    for value in form.getlist("model_version_ids"):
        if str(value).isdigit():
            systems.append({"model_version_id": int(value)})
            keys.append(f"model:{value}")
    for slot in range(UPLOAD_SLOTS):
        name = str(form.get(f"upload_{slot}_name", "")).strip()
        text = str(form.get(f"upload_{slot}_outputs", ""))
        if name or text.strip():
            systems.append({"name": name, "outputs": _outputs(text, f"upload_{slot}_outputs")})
            keys.append(f"upload:{slot}")
    baseline = str(form.get("baseline", ""))
    if baseline not in keys:
        raise Invalid("choose a baseline among the systems you compare", field="baseline")
    payload: dict[str, Any] = {
        "name": str(form.get("name", "")),
        "systems": systems,
        "baseline": keys.index(baseline),
        "split": form.get("split") or "test",
        "judges": form.get("judges") or "any",
    }
    for key in ("prompt_count", "overlap", "seed"):
        raw = str(form.get(key, "")).strip()
        if raw:
            if not raw.isdigit():
                raise Invalid(f"{key} must be a whole number", field=key)
            payload[key] = int(raw)
    if form.get("use_case"):
        payload["use_case"] = form.get("use_case")
    tokens = str(form.get("max_new_tokens", "")).strip()
    if tokens:
        if not tokens.isdigit():
            raise Invalid("max_new_tokens must be a whole number", field="max_new_tokens")
        payload["sampling"] = {"max_new_tokens": int(tokens)}
    return payload


@router.get("/admin/evaluations")
def evaluations_page(request: Request, session: ReadSessionDep) -> Response:
    response: Response = render(request, "admin/evaluations.html", _form_context(session))
    return response


@router.post("/admin/evaluations")
async def create_evaluation_form(
    request: Request, principal: ResearcherDep, session: SessionDep
) -> Response:
    form = await request.form()
    try:
        evaluation, _ = create_evaluation(session, payload_from_form(form), principal.user)
    except ServiceError as exc:
        session.rollback()
        context = _form_context(session, form, exc)
        page: Response = render(
            request, "admin/evaluations.html", context, status_code=exc.status_code
        )
        return page
    return RedirectResponse(f"/admin/evaluations/{evaluation.id}", status_code=303)


@router.get("/admin/evaluations/{evaluation_id}")
def evaluation_page(request: Request, evaluation_id: DbId, session: ReadSessionDep) -> Response:
    view = results(session, evaluation_id)
    challengers = [s for s in view["systems"] if not s["is_baseline"]]
    by_use_case = {
        uc: [s for s in rows if not s["is_baseline"]] for uc, rows in view["by_use_case"].items()
    }
    by_judges = {
        group: [s for s in rows if not s["is_baseline"]]
        for group, rows in view["by_judges"].items()
    }
    page: Response = render(
        request,
        "admin/evaluation.html",
        {
            "view": view,
            "chart": win_chart(challengers, title=f"Win rate against {view['baseline']}"),
            "challengers": challengers,
            "by_use_case": by_use_case,
            "by_judges": by_judges,
            "flags": FLAGS,
            "active": view["status"] in ("sampling", "judging"),
        },
    )
    return page


@router.get("/admin/leaderboard")
def leaderboard_page(request: Request, session: ReadSessionDep) -> Response:
    board = leaderboard(session)
    chart = win_chart(
        board, "strength", "ci95", title="Chance of beating an average system of the board"
    )
    page: Response = render(request, "admin/leaderboard.html", {"board": board, "chart": chart})
    return page
