"""Admin pages of labeler quality: agreement, settings and the labeler table (/admin/quality),
one labeler's record with the screening decision (/admin/labelers/{id}), labelers in screening
(/admin/screening) and gold tasks (/admin/gold). Same services as app/api/quality.py."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session
from starlette.datastructures import FormData

from app.config import get_settings
from app.db import utcnow
from app.deps import ReadSessionDep, ResearcherDep, SessionDep, researcher
from app.models import FLAGS
from app.schemas import DbId
from app.schemas.quality import QualityFilters
from app.services import Invalid, ServiceError, gold, screening
from app.services.judgment_data import agreement_report
from app.services.labeler_metrics import EXPLANATIONS
from app.services.labeler_stats import labeler_stats
from app.services.labeling_settings import (
    describe_overlap_settings,
    reset_overlap_settings,
    update_overlap_settings,
)
from app.services.quality_pages import gold_candidates, gold_task_form, screening_set
from app.web.prompts import form_data
from app.web.templating import render

router = APIRouter(include_in_schema=False, dependencies=[Depends(researcher)])


def _page(request: Request, name: str, context: dict[str, Any], status_code: int = 200) -> Response:
    return render(request, name, context, status_code=status_code)


PERIODS = {"7": "last 7 days", "30": "last 30 days", "all": "all time"}
# the labeler table's columns: (key, heading, higher is better: None = neutral)
COLUMNS: tuple[tuple[str, str, bool | None], ...] = (
    ("username", "Labeler", None),
    ("group", "Group", None),
    ("status", "Status", None),
    ("rankings", "Rankings", None),
    ("demonstrations", "Demos", None),
    ("median_seconds", "Median s", None),
    ("skip_rate", "Skips", False),
    ("gold_accuracy", "Gold acc.", True),
    ("flag_kappa", "Flag κ", True),
    ("agreement_with_others", "Agreement", True),
    ("position_bias", "Position bias", False),
    ("contradiction_rate", "Contradictions", False),
    ("untouched_rate", "Untouched", False),
)


def _period_filters(period: str) -> QualityFilters:
    days = {"7": 7, "30": 30}.get(period)
    return QualityFilters(since=utcnow() - timedelta(days=days) if days else None)


def _sorted(rows: list[dict[str, Any]], key: str, descending: bool) -> list[dict[str, Any]]:
    """Sorted on ``key``; labelers without the figure always last."""
    if key not in {c[0] for c in COLUMNS}:
        key = "username"
    present = [r for r in rows if r[key] is not None]
    missing = [r for r in rows if r[key] is None]
    return sorted(present, key=lambda r: r[key], reverse=descending) + missing


def _quality_page(
    request: Request,
    session: Session,
    *,
    period: str = "30",
    sort: str = "username",
    desc: bool = False,
    error: str | None = None,
    error_field: str | None = None,
    values: dict[str, str] | None = None,
    notice: str | None = None,
    status_code: int = 200,
) -> Response:
    period = period if period in PERIODS else "30"
    filters = _period_filters(period)
    agreement = {
        name: agreement_report(session, filters.model_copy(update={"group": group})).as_dict()
        for name, group in (("all", None), ("training", "training"), ("held_out", "held_out"))
    }
    rows = labeler_stats(session, filters)
    ctx = {
        "period": period,
        "periods": PERIODS,
        "agreement": agreement,
        "flags": FLAGS,
        "rows": _sorted(rows, sort, desc),
        "outlier_count": sum(1 for r in rows if r["outliers"]),
        "window": get_settings().quality_window_rankings,
        "columns": COLUMNS,
        "sort": sort,
        "desc": desc,
        "explanations": EXPLANATIONS,
        "settings": describe_overlap_settings(session),
        "error": error,
        "error_field": error_field,
        "values": values or {},
        "notice": notice,
    }
    return _page(request, "admin/quality.html", ctx, status_code=status_code)


@router.get("/admin/quality")
def quality_page(
    request: Request,
    principal: ResearcherDep,
    session: ReadSessionDep,
    period: str = "30",
    sort: str = "username",
    desc: bool = False,
) -> Response:
    return _quality_page(request, session, period=period, sort=sort, desc=desc)


@router.post("/admin/quality/settings")
def quality_settings_save(
    request: Request,
    principal: ResearcherDep,
    session: SessionDep,
    form: FormData = Depends(form_data),
) -> Response:
    values = {
        key: str(form.get(key, "")).strip()
        for key in (
            "agreement_share",
            "agreement_overlap",
            "adaptive_agreement_min",
            "adaptive_overlap_max",
        )
    }
    try:
        if form.get("reset"):
            reset_overlap_settings(session)
        else:
            update_overlap_settings(session, _numbers(values), by=principal.user)
        session.commit()
    except ServiceError as exc:
        session.rollback()
        return _quality_page(
            request,
            session,
            error=exc.detail,
            error_field=exc.field,
            values=values,
            status_code=exc.status_code,
        )
    return RedirectResponse("/admin/quality?saved=1#settings", status_code=303)


def _numbers(values: dict[str, str]) -> dict[str, float | int]:
    """Form text to numbers (422 naming the field); empty fields stay as they are."""
    parsed: dict[str, float | int] = {}
    for key, text in values.items():
        if not text:
            continue
        try:
            parsed[key] = int(text) if key.endswith(("_overlap", "_max")) else float(text)
        except ValueError:
            raise Invalid(f"{key}: {text!r} is not a number", field=key) from None
    return parsed


# one labeler ----------------------------------------------------------------------------------


def _labeler_page(
    request: Request,
    session: Session,
    labeler_id: int,
    *,
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    record = screening.labeler_record(session, labeler_id)
    return _page(
        request,
        "admin/labeler.html",
        {"r": record, "flags": FLAGS, "error": error},
        status_code=status_code,
    )


@router.get("/admin/labelers/{labeler_id}")
def labeler_page(
    request: Request,
    labeler_id: DbId,
    principal: ResearcherDep,
    session: ReadSessionDep,
) -> Response:
    return _labeler_page(request, session, labeler_id)


@router.post("/admin/labelers/{labeler_id}/decision")
def labeler_decision(
    request: Request,
    labeler_id: DbId,
    principal: ResearcherDep,
    session: SessionDep,
    form: FormData = Depends(form_data),
) -> Response:
    """Approve, reject, or move an approved labeler between the training and held-out groups."""
    action = str(form.get("action", ""))
    note = str(form.get("note", ""))
    try:
        if action == "approve":
            held_out = form.get("held_out") == "on"
            screening.approve(session, labeler_id, principal.user, note, held_out=held_out)
        elif action == "reject":
            screening.reject(session, labeler_id, principal.user, note)
        elif action in ("held_out", "training"):
            screening.set_group(session, labeler_id, action)
        else:
            raise Invalid("choose approve, reject, held_out or training", field="action")
        session.commit()
    except ServiceError as exc:
        session.rollback()
        return _labeler_page(
            request, session, labeler_id, error=exc.detail, status_code=exc.status_code
        )
    back = str(form.get("next", "")) or f"/admin/labelers/{labeler_id}"
    if not back.startswith("/admin/"):
        back = f"/admin/labelers/{labeler_id}"
    return RedirectResponse(back, status_code=303)


@router.get("/admin/screening")
def screening_page(
    request: Request,
    principal: ResearcherDep,
    session: ReadSessionDep,
) -> Response:
    rows = [r for r in labeler_stats(session, QualityFilters()) if r["status"] == "screening"]
    ctx = {"rows": rows, "set": screening_set(session)}
    return _page(request, "admin/screening.html", ctx)


# gold tasks -----------------------------------------------------------------------------------


def _gold_page(
    request: Request,
    session: Session,
    *,
    error: str | None = None,
    error_field: str | None = None,
    values: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    ctx = {
        "gold": gold.list_gold_tasks(session),
        "candidates": gold_candidates(session),
        "error": error,
        "error_field": error_field,
        "values": values or {},
    }
    return _page(request, "admin/gold.html", ctx, status_code=status_code)


@router.get("/admin/gold")
def gold_page(
    request: Request,
    principal: ResearcherDep,
    session: ReadSessionDep,
) -> Response:
    return _gold_page(request, session)


@router.post("/admin/gold/demonstrations")
def gold_demonstration_add(
    request: Request,
    principal: ResearcherDep,
    session: SessionDep,
    form: FormData = Depends(form_data),
) -> Response:
    values = {
        "prompt_id": str(form.get("prompt_id", "")).strip(),
        "reference_text": str(form.get("reference_text", "")),
    }
    try:
        if not values["prompt_id"].isdigit():
            raise Invalid("give the prompt's id (a number)", field="prompt_id")
        gold.create_gold_demonstration(
            session, int(values["prompt_id"]), values["reference_text"], created_by=principal.user
        )
        session.commit()
    except ServiceError as exc:
        session.rollback()
        return _gold_page(
            request,
            session,
            error=exc.detail,
            error_field=exc.field,
            values=values,
            status_code=exc.status_code,
        )
    return RedirectResponse("/admin/gold", status_code=303)


def _gold_task_page(
    request: Request,
    session: Session,
    task_id: int,
    *,
    values: dict[str, Any] | None = None,
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    ctx = gold_task_form(session, task_id, values)
    ctx.update({"flags": FLAGS, "error": error})
    return _page(request, "admin/gold_task.html", ctx, status_code=status_code)


@router.get("/admin/gold/go")
def gold_task_go(task_id: DbId) -> Response:
    return RedirectResponse(f"/admin/gold/tasks/{task_id}", status_code=303)


@router.get("/admin/gold/tasks/{task_id}")
def gold_task_page(
    request: Request,
    task_id: DbId,
    principal: ResearcherDep,
    session: ReadSessionDep,
) -> Response:
    """Turn a ranking task into gold: the reference place and flags of each output."""
    return _gold_task_page(request, session, task_id)


@router.post("/admin/gold/tasks/{task_id}")
def gold_task_save(
    request: Request,
    task_id: DbId,
    principal: ResearcherDep,
    session: SessionDep,
    form: FormData = Depends(form_data),
) -> Response:
    places = {
        key[len("place_") :]: str(value) for key, value in form.items() if key.startswith("place_")
    }
    flags = {
        int(key[len("flags_") :]): [str(v) for v in form.getlist(key)]
        for key in form
        if key.startswith("flags_") and key[len("flags_") :].isdigit()
    }
    screening_set_on = form.get("screening") == "on"
    values = {
        "places": places,
        "flags": flags,
        "screening": screening_set_on,
        "score_flags": form.get("score_flags") == "on" or any(flags.values()),
    }
    try:
        ranking = _groups_from_places(places)
        reference_flags = flags if values["score_flags"] else None
        gold.make_gold(session, task_id, ranking, reference_flags, screening=screening_set_on)
        session.commit()
    except ServiceError as exc:
        session.rollback()
        return _gold_task_page(
            request, session, task_id, values=values, error=exc.detail, status_code=exc.status_code
        )
    return RedirectResponse("/admin/gold", status_code=303)


def _groups_from_places(places: dict[str, str]) -> list[list[int]]:
    """``{"<completion id>": "<place>"}`` from the form (1 = best; equal places tie) as tie
    groups, best first; 422 when a place is missing or not a positive number."""
    by_place: dict[int, list[int]] = {}
    for cid, place in places.items():
        if not cid.isdigit():
            continue
        if not place.strip().isdigit() or int(place) < 1:
            raise Invalid(
                f"give every output a place: 1 for the best, equal numbers for ties "
                f"(output {cid} has {place.strip() or 'none'})",
                field=f"place_{cid}",
            )
        by_place.setdefault(int(place), []).append(int(cid))
    return [by_place[place] for place in sorted(by_place)]
