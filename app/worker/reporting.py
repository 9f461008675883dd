"""The trainer's progress callback, adapted to the job row: step/total, metrics over time,
the log tail and cancellation.

Database writes are batched (at most every ``FLUSH_S`` seconds, and at the last step), so a
fast trainer is not slowed down by one write transaction per step; every step reads
``Job.cancel_requested`` and raises ``JobCancelled`` out of the trainer when it is set.
"""

from __future__ import annotations

import math
import time
from collections import deque
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.db import get_readonly_sessionmaker, get_sessionmaker, utcnow
from app.models import Job, JobMetric
from trainer.callbacks import Progress

FLUSH_S = 0.3
LOG_LINES = 60


class JobCancelled(Exception):
    """Raised from the progress callback when a researcher cancelled the job."""


class JobFailed(Exception):
    """A failure with a message meant for the researcher (no traceback needed)."""


class JobReporter:
    def __init__(self, job_id: int, offset: int = 0, scale_total: int | None = None) -> None:
        self.job_id = job_id
        self.lines: deque[str] = deque(maxlen=LOG_LINES)
        self.pending: list[JobMetric] = []
        self.step, self.total = 0, 0
        self.last_flush = 0.0
        # a job made of several trainer runs (sampling from several models) maps each run's
        # steps onto one bar: step + offset of total_steps
        self.offset = offset
        self.scale_total = scale_total

    def log(self, line: str) -> None:
        stamp = datetime.now().strftime("%H:%M:%S")
        self.lines.append(f"{stamp} {line}")

    def __call__(self, progress: Progress) -> None:
        step = progress.step + self.offset
        total = self.scale_total or progress.total
        self.step, self.total = step, total
        shown = []
        for name, value in progress.metrics.items():
            if math.isfinite(value):
                self.pending.append(
                    JobMetric(job_id=self.job_id, step=step, name=name[:64], value=value)
                )
                shown.append(f"{name}={value:.4g}")
        message = f" {progress.message}" if progress.message else ""
        self.log(f"step {step}/{total}{message} {' '.join(shown)}".rstrip())
        now = time.monotonic()
        if now - self.last_flush >= FLUSH_S or step >= total:
            self.flush()
        elif self._cancel_requested():
            self.flush()  # writes what is pending, then raises JobCancelled

    def _cancel_requested(self) -> bool:
        """A cheap read at every step, so a cancel stops the job at the next step (on SQLite
        it does not take the write lock)."""
        with get_readonly_sessionmaker()() as session:
            return bool(session.scalar(select(Job.cancel_requested).where(Job.id == self.job_id)))

    def flush(self) -> None:
        """Write what is pending and honour a cancel request."""
        self.last_flush = time.monotonic()
        with get_sessionmaker()() as session:
            session.add_all(self.pending)
            self.pending = []
            session.execute(
                update(Job)
                .where(Job.id == self.job_id)
                .values(
                    progress_step=self.step,
                    progress_total=self.total,
                    log_tail="\n".join(self.lines),
                    heartbeat_at=utcnow(),
                )
            )
            cancel = session.scalar(select(Job.cancel_requested).where(Job.id == self.job_id))
            session.commit()
        if cancel:
            raise JobCancelled("cancelled by a researcher")

    def flush_pending_into(self, session: Session) -> None:
        """Add metrics not yet written to ``session`` (the job's final transaction)."""
        session.add_all(self.pending)
        self.pending = []
