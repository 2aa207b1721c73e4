"""Request bodies and wire objects of /v1/webhook_endpoints (OpenAI's `webhook_endpoint` shapes; the
deliveries list, `disabled` and `expire_previous_in` are our extensions)."""
from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from app.core.text import storable
from app.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from app.webhooks.rotation import previous_expires_at
from app.webhooks.signing import hint
from app.webhooks.urls import MAX_URL_LENGTH, URL_PATTERN

EventType = Literal["fine_tuning.job.succeeded", "fine_tuning.job.failed", "fine_tuning.job.cancelled"]
EVENT_TYPES: tuple[str, ...] = EventType.__args__
PingEventType = Literal["webhook.test", EventType]
MAX_OVERLAP = 7 * 24 * 3600  # the longest a rotated-out secret may keep signing


def _storable(value: str | None) -> str | None:
    if value is not None and not storable(value):
        raise ValueError("name may not contain lone surrogates (\\ud800-\\udfff)")
    return value


WebhookUrl = Annotated[str, Field(min_length=1, max_length=MAX_URL_LENGTH, json_schema_extra={"pattern": URL_PATTERN},
                                  description="http(s) URL that receives the POSTs. Its host must not be a loopback, "
                                  "private or link-local address (unless the operator allows them), checked again "
                                  "before each attempt.")]
EventTypes = Annotated[list[EventType], Field(min_length=1, max_length=len(EVENT_TYPES))]
Name = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f\x7f]+$"), AfterValidator(_storable)]


class CreateWebhookRequest(BaseModel):
    """The body of `POST /v1/webhook_endpoints` (OpenAI's `client.webhooks.create`)."""

    model_config = ConfigDict(extra="forbid")

    url: WebhookUrl
    event_types: EventTypes = Field(list(EVENT_TYPES), description="Events to deliver; default all three job endings.")
    name: Name | None = Field(None, description="A label without control characters; default the URL's host.")


def _at_least_one_field_no_null_defaults(schema: dict[str, Any]) -> None:
    """An update names what it changes: at least one field, none null (omitted means unchanged)."""
    schema["minProperties"] = 1
    for field in schema["properties"].values():
        field.pop("default", None)


class UpdateWebhookRequest(BaseModel):
    """The body of `POST /v1/webhook_endpoints/{id}` (OpenAI's `client.webhooks.update`, Stripe's
    `disabled`): only the fields given change."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_at_least_one_field_no_null_defaults)

    url: WebhookUrl = Field(None)
    event_types: EventTypes = Field(None, description="The complete set of events to deliver from now on.")
    name: Name = Field(None, description="A label without control characters.")
    disabled: bool = Field(None, description="true: no new deliveries, and pending ones wait; false: deliveries "
                           "resume, the waiting ones first.")

    @model_validator(mode="after")
    def _names_a_change(self) -> UpdateWebhookRequest:
        if not self.model_fields_set:
            raise ValueError("an update names at least one of url, event_types, name, disabled")
        return self


class RotateSecretRequest(BaseModel):
    """The body of `POST /v1/webhook_endpoints/{id}/rotate_secret` (optional)."""

    model_config = ConfigDict(extra="forbid")

    expire_previous_in: int | None = Field(None, ge=0, le=MAX_OVERLAP, description="Seconds the replaced secret "
                                           "keeps signing beside the new one (0: it stops now). Wins over "
                                           "keep_old_secret_active_for_24_hours. Default: the server's "
                                           "TUNEFORGE_WEBHOOK_SECRET_OVERLAP (24 h).")
    keep_old_secret_active_for_24_hours: bool | None = Field(None, description="OpenAI's form: true keeps the "
                                                             "replaced secret signing for 24 h, false stops it now.")


class PingWebhookRequest(BaseModel):
    """The body of `POST /v1/webhook_endpoints/{id}/test` (optional)."""

    model_config = ConfigDict(extra="forbid")

    event_type: PingEventType = Field("webhook.test", description="The sample event to send: `webhook.test` "
                                      "(data.id is the endpoint's id) or a job ending (data.id is `ftjob-sample`).")


def _ts(value) -> int | None:
    return int(value.timestamp()) if value else None


def endpoint_object(endpoint: WebhookEndpoint, *, with_secret: bool = False) -> dict[str, Any]:
    """OpenAI's `webhook_endpoint`, plus `disabled` and when a rotated-out secret stops signing (null
    when none does)."""
    body = {"id": endpoint.id, "object": "webhook_endpoint", "created_at": _ts(endpoint.created_at),
            "updated_at": _ts(endpoint.updated_at or endpoint.created_at), "name": endpoint.name, "url": endpoint.url,
            "event_types": list(endpoint.event_types), "signing_secret_hint": hint(endpoint.secret),
            "disabled": bool(endpoint.disabled),
            "previous_signing_secret_expires_at": _ts(previous_expires_at(endpoint))}
    return {**body, "signing_secret": endpoint.secret} if with_secret else body


def ping_object(delivery: WebhookDelivery) -> dict[str, Any]:
    """What POST …/test answers: the queued delivery to follow under …/deliveries/{delivery_id}."""
    return {"object": "webhook_endpoint.test", "webhook_endpoint_id": delivery.endpoint_id,
            "event_type": delivery.event_type, "event_id": delivery.event_id, "delivery_id": delivery.id,
            "status": delivery.status}


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
