"""The outbox: a job's end writes its webhook deliveries in the same transaction as the terminal state
(app/jobs/state.py calls `job_ended`), so neither exists without the other. Once that transaction
commits, its deliveries are sent to the broker at once; whatever that misses (broker down, process
killed in between) the maintenance pass sends (app/webhooks/recovery.py)."""
from __future__ import annotations

import json

from sqlalchemy import any_, event, select
from sqlalchemy.orm import Session

from app.core.ids import new_id
from app.models import DeliveryStatus, Job, WebhookDelivery, WebhookEndpoint
from app.models.base import utcnow
from app.models.job import JobStatus
from app.webhooks.recovery import send_due

EVENT_TYPES = {JobStatus.succeeded: "fine_tuning.job.succeeded", JobStatus.failed: "fine_tuning.job.failed",
               JobStatus.cancelled: "fine_tuning.job.cancelled"}
_UNSENT = "tuneforge.webhooks.unsent"  # session.info key: deliveries to send once the transaction commits


def event_body(event_id: str, event_type: str, job: Job) -> str:
    """OpenAI's webhook event object, as the exact bytes every attempt sends and signs."""
    created = int((job.finished_at or utcnow()).timestamp())
    return json.dumps({"id": event_id, "object": "event", "created_at": created, "type": event_type,
                       "data": {"id": job.id}}, separators=(",", ":"))


def job_ended(session: Session, job: Job) -> list[WebhookDelivery]:
    """One pending delivery per endpoint of the job's tenant that subscribed to this ending, added to
    the caller's transaction; none for a status that is not an ending."""
    event_type = EVENT_TYPES.get(JobStatus(job.status))
    if event_type is None:
        return []
    endpoints = session.scalars(select(WebhookEndpoint).where(WebhookEndpoint.tenant_id == job.tenant_id,
                                                              event_type == any_(WebhookEndpoint.event_types)))
    event_id, now = new_id("evt_"), utcnow()
    body = event_body(event_id, event_type, job)
    rows = [WebhookDelivery(id=new_id("whmsg_"), endpoint_id=endpoint.id, tenant_id=job.tenant_id, job_id=job.id,
                            event_id=event_id, event_type=event_type, body=body, status=DeliveryStatus.pending,
                            next_attempt_at=now, attempt=0) for endpoint in endpoints]
    session.add_all(rows)
    session.info.setdefault(_UNSENT, []).extend(row.id for row in rows)
    return rows


@event.listens_for(Session, "after_commit")
def _send_committed(session: Session) -> None:
    if unsent := session.info.pop(_UNSENT, None):
        send_due(unsent)


@event.listens_for(Session, "after_rollback")
def _forget_rolled_back(session: Session) -> None:
    session.info.pop(_UNSENT, None)
