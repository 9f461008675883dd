"""The job broker: the Celery application (broker and backend from settings, queues ``cpu``
and ``gpu``), shared by the services that send jobs and the workers (``app/worker``) that run
them. Infrastructure like ``app/db.py``: it knows queues and task names, not job kinds.

Production and the integration tests use Redis; the embedded default uses Celery's SQLAlchemy
transport on a SQLite file. Job state lives in the database (``Job`` rows), not in Celery's
result backend.
"""

from __future__ import annotations

from celery import Celery
from kombu.entity import Queue

from app.config import get_settings

QUEUES = ("cpu", "gpu")
RUN_JOB_TASK = "prefloop.run_job"


def queue_name(queue: str) -> str:
    """The broker's name for ``queue`` (with the deployment's prefix)."""
    return f"{get_settings().queue_prefix}{queue}"


def make_celery() -> Celery:
    settings = get_settings()
    if settings.celery_broker_url.startswith("sqla+sqlite"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    celery = Celery(
        "prefloop",
        broker=settings.celery_broker_url,
        backend=settings.celery_result_backend,
        include=["app.worker.tasks"],
    )
    transport_options: dict[str, object] = {}
    if settings.celery_broker_url.startswith(("redis://", "rediss://")) and settings.queue_prefix:
        transport_options["global_keyprefix"] = settings.queue_prefix
    celery.conf.update(
        task_queues=[Queue(queue_name(name)) for name in QUEUES],
        task_default_queue=queue_name("cpu"),
        task_routes={RUN_JOB_TASK: {"queue": queue_name("gpu")}},
        # a job is acknowledged only when it ends, so a killed worker's job is not silently lost;
        # the job row (heartbeat, status) is the source of truth, so a redelivery is a no-op
        task_acks_late=True,
        task_reject_on_worker_lost=False,
        task_ignore_result=True,
        worker_prefetch_multiplier=1,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        broker_connection_retry_on_startup=True,
        broker_transport_options=transport_options,
        result_extended=True,
        worker_hijack_root_logger=False,
    )
    return celery


celery_app = make_celery()
_apps_by_broker: dict[tuple[str, str], Celery] = {}


def current_celery() -> Celery:
    """``celery_app``, or one for the current settings when they changed since import (tests
    point the settings at another broker after the module was loaded)."""
    settings = get_settings()
    key = (settings.celery_broker_url, settings.queue_prefix)
    if celery_app.conf.broker_url == key[0] and celery_app.conf.task_default_queue == queue_name(
        "cpu"
    ):
        return celery_app
    if key not in _apps_by_broker:
        _apps_by_broker[key] = make_celery()
    return _apps_by_broker[key]


def send_job(job_id: int, queue: str) -> str:
    """Put job ``job_id`` on ``queue`` (``cpu`` or ``gpu``); returns the Celery task id."""
    result = current_celery().send_task(RUN_JOB_TASK, args=[job_id], queue=queue_name(queue))
    return str(result.id)
