"""Signs of life: the worker's row in ``worker_heartbeats`` (shown on the admin page) and the
running job's ``heartbeat_at``, each refreshed by a background thread of the worker process.

The worker thread also runs the crash sweep, so a job whose worker died is failed by any
surviving worker (and, lazily, by the web app when jobs are read).
"""

from __future__ import annotations

import logging
import os
import threading
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, select, update

from app.config import get_settings
from app.db import get_sessionmaker, utcnow
from app.models import Job, JobStatus, WorkerHeartbeat

log = logging.getLogger(__name__)


def beat_worker(hostname: str, queues: str) -> None:
    with get_sessionmaker()() as session:
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
        session.commit()


def forget_worker(hostname: str) -> None:
    with get_sessionmaker()() as session:
        session.execute(delete(WorkerHeartbeat).where(WorkerHeartbeat.hostname == hostname))
        session.commit()


def worker_alive_window_s() -> float:
    settings = get_settings()
    return max(3 * settings.worker_heartbeat_s, settings.job_heartbeat_timeout_s)


def list_workers(session: Any) -> list[dict[str, Any]]:
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


class _Ticker(threading.Thread):
    """A daemon thread calling ``tick`` every ``interval`` seconds until stopped."""

    def __init__(self, interval: float, name: str) -> None:
        super().__init__(name=name, daemon=True)
        self.interval = interval
        self.stopped = threading.Event()

    def tick(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def run(self) -> None:
        while not self.stopped.is_set():
            try:
                self.tick()
            except Exception:  # a database hiccup must not kill the heartbeat
                log.exception("%s failed; retrying", self.name)
            self.stopped.wait(self.interval)

    def stop(self) -> None:
        self.stopped.set()


class WorkerBeat(_Ticker):
    """Keeps the worker's row fresh and fails jobs of dead workers (the periodic sweep)."""

    def __init__(self, hostname: str, queues: str) -> None:
        super().__init__(get_settings().worker_heartbeat_s, "prefloop-worker-heartbeat")
        self.hostname, self.queues = hostname, queues

    def tick(self) -> None:
        from app.services.jobs import sweep_stale_jobs

        beat_worker(self.hostname, self.queues)
        with get_sessionmaker()() as session:
            failed = sweep_stale_jobs(session)
            session.commit()
        if failed:
            log.warning("failed jobs %s: their worker stopped sending heartbeats", failed)


class JobBeat(_Ticker):
    """Refreshes a running job's ``heartbeat_at`` while this process works on it."""

    def __init__(self, job_id: int) -> None:
        super().__init__(get_settings().worker_heartbeat_s, f"prefloop-job-{job_id}-heartbeat")
        self.job_id = job_id

    def tick(self) -> None:
        with get_sessionmaker()() as session:
            session.execute(
                update(Job)
                .where(Job.id == self.job_id, Job.status == JobStatus.running.value)
                .values(heartbeat_at=utcnow())
            )
            session.commit()

    def __enter__(self) -> JobBeat:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self.join(timeout=10)
