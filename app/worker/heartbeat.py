"""Signs of life: the worker's row in ``worker_heartbeats`` (shown on the admin page) and the
running job's ``heartbeat_at``, each refreshed by a background thread of the worker process.

The periodic sweep (``sweep_jobs``) fails the running jobs whose worker stopped beating and
sends the queued jobs the broker missed, and keeps the task queue up (expired holds released,
demonstration tasks made for new prompts: `queue_upkeep.maintain_queue`; on a PostgreSQL server
without autovacuum, the changed tables analyzed: `table_statistics`). Every worker runs it
with its heartbeat, and ``prefloop serve`` runs it in a ``JobSweeper`` thread, so a crashed
job ends ``failed`` even when no worker is left; reading jobs never writes.
"""

from __future__ import annotations

import logging
import threading

from sqlalchemy import update

from app.config import get_settings
from app.db import get_engine, get_sessionmaker, utcnow
from app.models import Job, JobStatus
from app.services import workers
from app.services.jobs import send_unsent_jobs, sweep_stale_jobs
from app.services.queue_upkeep import maintain_queue
from app.services.table_statistics import analyze_changed_tables

log = logging.getLogger(__name__)


def forget_worker(hostname: str) -> None:
    with get_sessionmaker()() as session:
        workers.forget_worker(session, hostname)
        session.commit()


def sweep_jobs() -> None:
    """One round of the periodic sweep, each part in its own transaction."""
    with get_sessionmaker()() as session:
        failed = sweep_stale_jobs(session)
        session.commit()
    if failed:
        log.warning("failed jobs %s: their worker stopped sending heartbeats", failed)
    with get_sessionmaker()() as session:
        sent = send_unsent_jobs(session)
        session.commit()
    if sent:
        log.warning("sent jobs %s to the broker (it was unreachable when they were launched)", sent)
    with get_sessionmaker()() as session:
        # the task queue's upkeep, kept off the labelers' next-task path
        maintain_queue(session)
        session.commit()
    with get_engine().connect() as connection:
        # PostgreSQL without autovacuum only: statistics that follow the data
        analyzed = analyze_changed_tables(connection)
    if analyzed:
        log.debug("analyzed %s (autovacuum is off)", analyzed)


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
        with get_sessionmaker()() as session:
            workers.record_worker_beat(session, self.hostname, self.queues)
            session.commit()
        sweep_jobs()


class JobSweeper(_Ticker):
    """The periodic sweep outside any worker (``prefloop serve`` runs one)."""

    def __init__(self, interval: float | None = None) -> None:
        super().__init__(interval or get_settings().worker_heartbeat_s, "prefloop-job-sweeper")

    def tick(self) -> None:
        sweep_jobs()


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
