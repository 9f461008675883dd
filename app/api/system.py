"""Health and identity endpoints."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from app.deps import LabelerDep, SessionDep
from app.services.health import check_broker, check_database

router = APIRouter()


class Me(BaseModel):
    user_id: int
    username: str
    role: str
    held_out: bool
    # screening | approved | rejected (docs/quality.md)
    status: str


@router.get("/healthz", tags=["system"])
def healthz(session: SessionDep) -> JSONResponse:
    """Database and broker reachability; 503 when either is down."""
    database = check_database(session)
    broker = check_broker()
    ok = database["ok"] and broker["ok"]
    body = {"status": "ok" if ok else "degraded", "database": database, "broker": broker}
    return JSONResponse(body, status_code=200 if ok else 503)


@router.get("/api/v1/me", response_model=Me, tags=["system"])
def me(principal: LabelerDep) -> Me:
    user = principal.user
    return Me(
        user_id=user.id,
        username=user.username,
        role=user.role,
        held_out=user.held_out,
        status=user.labeler_status,
    )
