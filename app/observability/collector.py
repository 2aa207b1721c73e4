"""Job, queue, worker and throughput gauges read from PostgreSQL at scrape time: the database is the
truth, so every API process answers the same, however many there are."""
from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select, text, union_all

from app.core.db import session_scope
from app.core.queue import training_queues, waiting_messages
from app.jobs.state import HELD_BY_WORKER
from app.models import Job, JobExport, WebhookDelivery
from app.models.job import JobStatus
from app.models.job_export import ExportStatus

log = logging.getLogger(__name__)

# the newest throughput figures of each running job (metrics events written by the worker's sink)
LATEST_RATES = text("""
    select distinct on (e.job_id) e.job_id, j.tenant_id,
           (e.data ->> 'samples_per_second')::float as samples, (e.data ->> 'tokens_per_second')::float as tokens
    from job_events e join jobs j on j.id = e.job_id
    where j.status = 'running' and e.type = 'metrics' and e.data ? 'samples_per_second'
    order by e.job_id, e.seq desc""")


def _gauge(name: str, doc: str, labels: list[str], rows: list[tuple[Any, ...]]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=labels)
    for *values, number in rows:
        family.add_metric([str(v) for v in values], float(number or 0.0))
    return family


def _held_by_worker(session) -> list[tuple[str, float]]:
    """(worker, newest heartbeat as unix time) over the jobs and exports each worker holds."""
    held = union_all(
        select(Job.worker_id, Job.heartbeat_at).where(Job.status.in_(HELD_BY_WORKER)),
        select(JobExport.worker_id, JobExport.heartbeat_at).where(JobExport.status == ExportStatus.running)).subquery()
    rows = session.execute(select(held.c.worker_id, func.max(held.c.heartbeat_at))
                           .where(held.c.worker_id.is_not(None), held.c.heartbeat_at.is_not(None))
                           .group_by(held.c.worker_id)).all()
    return [(worker, beat.timestamp()) for worker, beat in rows]


def database_families() -> list[GaugeMetricFamily]:
    """Every gauge this module exports, read in one short transaction."""
    with session_scope() as session:
        by_state = dict(session.execute(select(Job.status, func.count()).group_by(Job.status)).all())
        queued = session.execute(select(Job.tenant_id, func.count()).where(Job.status == JobStatus.queued)
                                 .group_by(Job.tenant_id)).all()
        beats = _held_by_worker(session)
        rates = session.execute(LATEST_RATES).all()
        hooks = session.execute(select(WebhookDelivery.status, func.count()).group_by(WebhookDelivery.status)).all()
    now = time.time()
    return [
        _gauge("tuneforge_jobs", "Jobs in each state.", ["state"], [(s, by_state.get(s, 0)) for s in JobStatus]),
        _gauge("tuneforge_queue_depth", "Queued jobs waiting for a worker, per tenant.", ["tenant"], queued),
        _gauge("tuneforge_worker_last_heartbeat_timestamp_seconds", "Newest heartbeat of each worker holding "
               "a job or export (unix time).", ["worker"], beats),
        _gauge("tuneforge_worker_heartbeat_age_seconds", "Seconds since each busy worker's last heartbeat; "
               "past TUNEFORGE_HEARTBEAT_TIMEOUT its work is re-queued.", ["worker"],
               [(worker, max(0.0, now - beat)) for worker, beat in beats]),
        _gauge("tuneforge_job_samples_per_second", "Training samples per second of each running job, as last "
               "reported.", ["job", "tenant"], [(job, tenant, samples) for job, tenant, samples, _ in rates]),
        _gauge("tuneforge_job_tokens_per_second", "Training tokens (non-padding) per second of each running job, "
               "as last reported.", ["job", "tenant"],
               [(job, tenant, tokens) for job, tenant, _, tokens in rates if tokens is not None]),
        _gauge("tuneforge_training_samples_per_second", "Samples per second over all running jobs.", [],
               [(sum(r[2] or 0.0 for r in rates),)]),
        _gauge("tuneforge_training_tokens_per_second", "Tokens per second over all running jobs.", [],
               [(sum(r[3] or 0.0 for r in rates),)]),
        _gauge("tuneforge_webhook_deliveries", "Webhook deliveries in each state.", ["state"], hooks),
    ]


class DatabaseCollector(Collector):
    """Reads the gauges at each scrape. A database or broker that is down is reported
    (`tuneforge_database_up`, `tuneforge_broker_up`) instead of failing the whole scrape."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            families, up = database_families(), 1
        except Exception as exc:
            log.warning("metrics: database unavailable: %s", exc)
            families, up = [], 0
        yield from families
        yield _gauge("tuneforge_database_up", "1 if the last scrape could read PostgreSQL.", [], [(up,)])
        try:
            waiting, broker_up = sum(waiting_messages(queue) for queue in training_queues()), 1  # every class
        except Exception:
            waiting, broker_up = 0, 0
        yield _gauge("tuneforge_broker_waiting_messages", "Training messages sent to the broker and not yet "
                     "taken by a worker.", [], [(waiting,)])
        yield _gauge("tuneforge_broker_up", "1 if the last scrape could read Redis.", [], [(broker_up,)])
