"""Health and identity endpoints."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from app.deps import Principal, SessionDep, require_role
from app.models import Role
from app.services.health import check_broker, check_database

router = APIRouter()


class Me(BaseModel):
    user_id: int
    username: str
    role: str
    held_out: bool
    # screening | approved | rejected (docs/quality.md)
    status: str
    # the token's scopes (e.g. ["ingest"]); empty for a full token or a browser session
    scopes: list[str]
    # how the caller signed in: "token" or "session"
    auth: str


class Reachability(BaseModel):
    ok: bool
    # what answered (when ok): the database's dialect, the broker's transport
    dialect: str | None = None
    transport: str | None = None
    # the exception's class name (when not ok)
    error: str | None = None


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    database: Reachability
    broker: Reachability


HEALTH_503 = {
    "description": "the database or the broker is unreachable (this body), or the database is"
    " saturated (an error body, with Retry-After)",
    "content": {
        "application/json": {
            "schema": {
                "anyOf": [
                    {"$ref": "#/components/schemas/Health"},
                    {"$ref": "#/components/schemas/ErrorOut"},
                ]
            }
        }
    },
}


# every credential may ask who it is, an ingest-only token included
whoever = require_role(Role.labeler, scope="ingest")


@router.get("/healthz", tags=["system"], response_model=Health, responses={503: HEALTH_503})
def healthz(session: SessionDep) -> JSONResponse:
    """Database and broker reachability; 503 when either is down."""
    database = check_database(session)
    broker = check_broker()
    ok = database["ok"] and broker["ok"]
    body = {"status": "ok" if ok else "degraded", "database": database, "broker": broker}
    return JSONResponse(body, status_code=200 if ok else 503)


@router.get("/api/v1/me", response_model=Me, tags=["system"])
def me(principal: Annotated[Principal, Depends(whoever)]) -> Me:
    """Who the caller is: the token's (or session's) owner, role and scopes."""
    user = principal.user
    return Me(
        user_id=user.id,
        username=user.username,
        role=user.role,
        held_out=user.held_out,
        status=user.labeler_status,
        scopes=list(principal.scopes),
        auth="token" if principal.token is not None else "session",
    )
