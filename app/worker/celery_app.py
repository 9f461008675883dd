"""The Celery application: broker and backend from settings, queues ``cpu`` and ``gpu``."""

from __future__ import annotations

from celery import Celery
from kombu import Queue

from app.config import get_settings

QUEUES = ("cpu", "gpu")


def make_celery() -> Celery:
    settings = get_settings()
    if settings.celery_broker_url.startswith("sqla+sqlite"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    celery = Celery(
        "prefloop",
        broker=settings.celery_broker_url,
        backend=settings.celery_result_backend,
        include=[],
    )
    celery.conf.update(
        task_queues=[Queue(name) for name in QUEUES],
        task_default_queue="cpu",
        # a job is acknowledged only when it ends, so a killed worker's job is not silently lost
        task_acks_late=True,
        task_reject_on_worker_lost=False,
        worker_prefetch_multiplier=1,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        broker_connection_retry_on_startup=True,
        result_extended=True,
    )
    return celery


celery_app = make_celery()
