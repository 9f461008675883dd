"""The workers' signs of life (``worker_heartbeats``): recorded by each worker's heartbeat
thread, read by the admin page and the API to tell which workers are alive."""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from app.config import get_settings
from app.db import utcnow
from app.models import WorkerHeartbeat


def record_worker_beat(session: Session, hostname: str, queues: str) -> None:
    """Say that worker ``hostname`` (this process) is alive and consumes ``queues``."""
    row = session.get(WorkerHeartbeat, hostname)
    now = utcnow()
    if row is None:
        session.add(
            WorkerHeartbeat(
                hostname=hostname, queues=queues, pid=os.getpid(), started_at=now, last_seen=now
            )
        )
    else:
        row.last_seen, row.queues, row.pid = now, queues, os.getpid()
    session.flush()


def forget_worker(session: Session, hostname: str) -> None:
    """A worker that shut down cleanly leaves the list."""
    session.execute(delete(WorkerHeartbeat).where(WorkerHeartbeat.hostname == hostname))


def worker_alive_window_s() -> float:
    settings = get_settings()
    return max(3 * settings.worker_heartbeat_s, settings.job_heartbeat_timeout_s)


def list_workers(session: Session) -> list[dict[str, Any]]:
    """Known workers, newest heartbeat first, with ``alive`` when it beat recently."""
    cutoff = utcnow() - timedelta(seconds=worker_alive_window_s())
    rows = session.scalars(select(WorkerHeartbeat).order_by(WorkerHeartbeat.last_seen.desc()))
    return [
        {
            "hostname": w.hostname,
            "queues": w.queues,
            "pid": w.pid,
            "started_at": w.started_at,
            "last_seen": w.last_seen,
            "alive": w.last_seen >= cutoff,
        }
        for w in rows
    ]
