"""Enqueue training tasks by name, so the API never imports the worker (or torch)."""
from __future__ import annotations

import re
from functools import lru_cache

import redis

from celery import Celery

from app.core.config import get_settings

RUN_JOB_TASK = "tuneforge.run_job"
EXPORT_TASK = "tuneforge.export_job"
WEBHOOK_TASK = "tuneforge.deliver_webhook"
INDEX_CORPUS_TASK = "tuneforge.index_corpus"


def celery_config(redis_url: str) -> dict:
    return {
        "broker_url": redis_url,
        "task_ignore_result": True,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "broker_connection_retry_on_startup": True,
        "broker_transport_options": {"visibility_timeout": 12 * 3600},
        "task_default_queue": get_settings().queue_name,
    }


@lru_cache
def get_producer() -> Celery:
    app = Celery("tuneforge-producer")
    app.conf.update(celery_config(get_settings().require_redis_url()))
    return app


@lru_cache
def get_redis() -> redis.Redis:
    """One connection pool per process for the direct Redis reads (queue depth, rate counters)."""
    return redis.Redis.from_url(get_settings().require_redis_url())


def enqueue_job(job_id: str, queue: str | None = None) -> None:
    """Send only the job id, to `queue` (its resource class's, app.jobs.resources; default the CPU queue);
    the worker reads everything else from PostgreSQL."""
    get_producer().send_task(RUN_JOB_TASK, args=[job_id], queue=queue or get_settings().queue_name)


def enqueue_export(export_id: str) -> None:
    """Send only the export id (not a job id: the reconciler's scan for held jobs must not see it)."""
    get_producer().send_task(EXPORT_TASK, args=[export_id], queue=get_settings().queue_name)


def enqueue_corpus(corpus_id: str) -> None:
    """Send a corpus id to be indexed (app/corpora, workers/tasks/index_corpus.py)."""
    get_producer().send_task(INDEX_CORPUS_TASK, args=[corpus_id], queue=get_settings().queue_name)


def enqueue_webhook(delivery_id: str) -> None:
    """Send a webhook delivery's id to the webhook queue (never behind a training job)."""
    get_producer().send_task(WEBHOOK_TASK, args=[delivery_id], queue=get_settings().webhook_queue)


JOB_ID = re.compile(rb"ftjob-[A-Za-z0-9]{24}")
EXPORT_ID = re.compile(rb"ftexp-[A-Za-z0-9]{24}")
WEBHOOK_ID = re.compile(rb"whmsg_[A-Za-z0-9]{24}")
CORPUS_ID = re.compile(rb"corpus-[A-Za-z0-9]{24}")


def training_queues() -> list[str]:
    """The CPU training queue and every GPU class queue that exists in Redis now (`<queue_name>.gpu…`)."""
    base = get_settings().queue_name
    gpu = sorted(key.decode() for key in get_redis().scan_iter(match=f"{base}.gpu*", count=1000))
    return [base, *gpu]


def held_by_broker(ids: re.Pattern[bytes], queue: str | None = None) -> set[str]:
    """The ids `ids` matches (JOB_ID, EXPORT_ID, WEBHOOK_ID) in messages Redis still holds: waiting in
    `queue` (default: every training queue, GPU classes included) or delivered but unacknowledged."""
    client = get_redis()
    raw = [message for name in ([queue] if queue else training_queues()) for message in client.lrange(name, 0, -1)]
    raw += list(client.hvals("unacked"))
    return {match.decode() for message in raw for match in ids.findall(message)}


def waiting_messages(queue: str | None = None) -> int:
    """Messages sent to `queue` (default: the CPU training queue) and not yet taken by a worker."""
    return int(get_redis().llen(queue or get_settings().queue_name))


def broker_ping() -> bool:
    try:
        with get_producer().connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
        return True
    except Exception:
        return False
