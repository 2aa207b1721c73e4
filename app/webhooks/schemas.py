"""Request body and wire objects of /v1/webhook_endpoints (OpenAI's `webhook_endpoint` shapes; the
deliveries list is our extension)."""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from app.core.text import storable
from app.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from app.webhooks.signing import hint
from app.webhooks.urls import MAX_URL_LENGTH, URL_PATTERN

EventType = Literal["fine_tuning.job.succeeded", "fine_tuning.job.failed", "fine_tuning.job.cancelled"]
EVENT_TYPES: tuple[str, ...] = EventType.__args__


class CreateWebhookRequest(BaseModel):
    """The body of `POST /v1/webhook_endpoints` (OpenAI's `client.webhooks.create`)."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(min_length=1, max_length=MAX_URL_LENGTH, json_schema_extra={"pattern": URL_PATTERN},
                     description="http(s) URL that receives the POSTs. Its host must not be a loopback, private "
                     "or link-local address (unless the operator allows them), checked again before each attempt.")
    event_types: list[EventType] = Field(list(EVENT_TYPES), min_length=1, max_length=len(EVENT_TYPES),
                                         description="Events to deliver; default all three job endings.")
    name: str | None = Field(None, min_length=1, max_length=128, pattern=r"^[^\x00-\x1f\x7f]+$",
                             description="A label without control characters; default the URL's host.")

    @field_validator("name")
    @classmethod
    def _storable(cls, value: str | None) -> str | None:
        if value is not None and not storable(value):
            raise ValueError("name may not contain lone surrogates (\\ud800-\\udfff)")
        return value


def _ts(value) -> int | None:
    return int(value.timestamp()) if value else None


def endpoint_object(endpoint: WebhookEndpoint, *, with_secret: bool = False) -> dict[str, Any]:
    body = {"id": endpoint.id, "object": "webhook_endpoint", "created_at": _ts(endpoint.created_at),
            "updated_at": _ts(endpoint.created_at), "name": endpoint.name, "url": endpoint.url,
            "event_types": list(endpoint.event_types), "signing_secret_hint": hint(endpoint.secret)}
    return {**body, "signing_secret": endpoint.secret} if with_secret else body


def deleted_object(endpoint_id: str) -> dict[str, Any]:
    return {"id": endpoint_id, "object": "webhook_endpoint.deleted", "deleted": True}


def attempt_object(attempt: WebhookAttempt) -> dict[str, Any]:
    return {"attempt": attempt.attempt, "created_at": _ts(attempt.created_at),
            "response_status": attempt.response_status, "error": attempt.error, "duration_ms": attempt.duration_ms}


def delivery_object(delivery: WebhookDelivery, attempts: list[WebhookAttempt]) -> dict[str, Any]:
    return {"id": delivery.id, "object": "webhook_delivery", "created_at": _ts(delivery.created_at),
            "endpoint_id": delivery.endpoint_id, "event_id": delivery.event_id, "event_type": delivery.event_type,
            "fine_tuning_job_id": delivery.job_id, "status": delivery.status, "attempt_count": delivery.attempt,
            "next_attempt_at": _ts(delivery.next_attempt_at) if delivery.status == "pending" else None,
            "delivered_at": _ts(delivery.finished_at) if delivery.status == "delivered" else None,
            "response_status": delivery.response_status, "last_error": delivery.last_error,
            "attempts": [attempt_object(a) for a in attempts]}
