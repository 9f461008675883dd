"""Reachability checks for /healthz."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from app.config import get_settings


def check_database(session: Session) -> dict[str, Any]:
    try:
        session.execute(text("SELECT 1"))
        return {"ok": True, "dialect": session.get_bind().dialect.name}
    except Exception as exc:  # reported, not raised: health must answer
        return {"ok": False, "error": type(exc).__name__}


def check_broker() -> dict[str, Any]:
    url = get_settings().celery_broker_url
    try:
        if url.startswith(("redis://", "rediss://")):
            import redis

            client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
            client.ping()
            return {"ok": True, "transport": "redis"}
        if url.startswith("sqla+"):
            from sqlalchemy import create_engine

            engine = create_engine(url.removeprefix("sqla+"))
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            engine.dispose()
            return {"ok": True, "transport": "sqlalchemy"}
        from kombu.connection import Connection

        with Connection(url, connect_timeout=2) as conn:
            conn.ensure_connection(max_retries=1)
        return {"ok": True, "transport": url.split(":", 1)[0]}
    except Exception as exc:
        return {"ok": False, "error": type(exc).__name__}
