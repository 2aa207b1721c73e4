"""The Celery application of `tuneforge worker`: one training job at a time per worker."""
from __future__ import annotations

from celery import Celery
from celery.signals import worker_ready

from app.core.config import get_settings
from app.core.queue import celery_config
from workers import log_context  # noqa: F401  (task log context, JSON logs)


def create_celery() -> Celery:
    celery = Celery("tuneforge", include=["workers.tasks.run_job", "workers.tasks.export_job",
                                         "workers.tasks.index_corpus",
                                         "workers.tasks.deliver_webhook"])
    celery.conf.update(celery_config(get_settings().require_redis_url()))
    celery.conf.update(worker_hijack_root_logger=False)
    return celery


@worker_ready.connect
def _warm_up(sender: object = None, **_: object) -> None:
    """Import torch/transformers before the first job, so submit-to-first-step is not import time
    (not in a worker that only delivers webhooks)."""
    queues = {queue.name for queue in getattr(getattr(sender, "task_consumer", None), "queues", None) or ()}
    settings = get_settings()
    if not queues or any(q.startswith(settings.queue_name) and q != settings.webhook_queue for q in queues):
        import app.training.classification  # noqa: F401


celery_app = create_celery()
