"""The outbox: a job's end writes its webhook deliveries in the same transaction as the terminal state
(app/jobs/state.py calls `job_ended`), so neither exists without the other. Once that transaction
commits, its deliveries are sent to the broker at once; whatever that misses (broker down, process
killed in between) the maintenance pass sends (app/webhooks/recovery.py). Test pings and an endpoint
enabled again take the same path."""
from __future__ import annotations

import json
from datetime import datetime

from sqlalchemy import any_, event, select
from sqlalchemy.orm import Session

from app.core.ids import new_id
from app.models import DeliveryStatus, Job, WebhookDelivery, WebhookEndpoint
from app.models.base import utcnow
from app.models.job import JobStatus
from app.webhooks.recovery import send_due

EVENT_TYPES = {JobStatus.succeeded: "fine_tuning.job.succeeded", JobStatus.failed: "fine_tuning.job.failed",
               JobStatus.cancelled: "fine_tuning.job.cancelled"}
TEST_EVENT = "webhook.test"
SAMPLE_JOB_ID = "ftjob-sample"  # the job a test ping of a job event names: none of the tenant's
_UNSENT = "tuneforge.webhooks.unsent"  # session.info key: deliveries to send once the transaction commits


def event_body(event_id: str, event_type: str, job: Job) -> str:
    """OpenAI's webhook event object, as the exact bytes every attempt sends and signs."""
    return _body(event_id, event_type, job.finished_at or utcnow(), job.id)


def _body(event_id: str, event_type: str, created: datetime, data_id: str) -> str:
    return json.dumps({"id": event_id, "object": "event", "created_at": int(created.timestamp()), "type": event_type,
                       "data": {"id": data_id}}, separators=(",", ":"))


def _send_after_commit(session: Session, delivery_ids: list[str]) -> None:
    session.info.setdefault(_UNSENT, []).extend(delivery_ids)


def job_ended(session: Session, job: Job) -> list[WebhookDelivery]:
    """One pending delivery per endpoint of the job's tenant that subscribed to this ending, added to
    the caller's transaction; none for a status that is not an ending."""
    event_type = EVENT_TYPES.get(JobStatus(job.status))
    if event_type is None:
        return []
    endpoints = session.scalars(select(WebhookEndpoint).where(WebhookEndpoint.tenant_id == job.tenant_id,
                                                              event_type == any_(WebhookEndpoint.event_types),
                                                              WebhookEndpoint.disabled.is_(False)))
    event_id, now = new_id("evt_"), utcnow()
    body = event_body(event_id, event_type, job)
    rows = [WebhookDelivery(id=new_id("whmsg_"), endpoint_id=endpoint.id, tenant_id=job.tenant_id, job_id=job.id,
                            event_id=event_id, event_type=event_type, body=body, status=DeliveryStatus.pending,
                            next_attempt_at=now, attempt=0) for endpoint in endpoints]
    session.add_all(rows)
    _send_after_commit(session, [row.id for row in rows])
    return rows


def ping(session: Session, endpoint: WebhookEndpoint, event_type: str = TEST_EVENT) -> WebhookDelivery:
    """A sample event for `endpoint` alone (whatever it subscribed to), sent, signed, retried and
    recorded like a job's: `data.id` is the endpoint's id for `webhook.test`, SAMPLE_JOB_ID for a job event."""
    event_id, now = new_id("evt_"), utcnow()
    data_id = endpoint.id if event_type == TEST_EVENT else SAMPLE_JOB_ID
    row = WebhookDelivery(id=new_id("whmsg_"), endpoint_id=endpoint.id, tenant_id=endpoint.tenant_id, job_id=None,
                          event_id=event_id, event_type=event_type, body=_body(event_id, event_type, now, data_id),
                          status=DeliveryStatus.pending, next_attempt_at=now, attempt=0)
    session.add(row)
    session.flush()
    _send_after_commit(session, [row.id])
    return row


def resume(session: Session, endpoint: WebhookEndpoint) -> list[str]:
    """An endpoint enabled again: its pending deliveries (held while it was disabled) are sent once the
    transaction commits; ones already due go at once, retries at their time (the maintenance pass)."""
    pending = list(session.scalars(select(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint.id,
                                                                 WebhookDelivery.status == DeliveryStatus.pending)))
    for delivery in pending:
        delivery.enqueued_at = None
    _send_after_commit(session, [delivery.id for delivery in pending])
    return [delivery.id for delivery in pending]


@event.listens_for(Session, "after_commit")
def _send_committed(session: Session) -> None:
    if unsent := session.info.pop(_UNSENT, None):
        send_due(unsent)


@event.listens_for(Session, "after_rollback")
def _forget_rolled_back(session: Session) -> None:
    session.info.pop(_UNSENT, None)
