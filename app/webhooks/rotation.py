"""Signing-secret rotation with an overlap window. A receiver cannot switch secrets at the very instant
the server does, so after a rotation the old secret keeps signing beside the new one (two signatures
in `webhook-signature`) until the window closes; then only the new one signs. Rotating again inside a
window makes the secret just replaced the previous one: the older one stops at once."""
from __future__ import annotations

from datetime import datetime, timedelta

from app.core.config import get_settings
from app.models import WebhookEndpoint
from app.models.base import utcnow
from app.webhooks.signing import new_secret

DAY = 24 * 3600


def overlap_seconds(expire_previous_in: int | None, keep_old_secret_active_for_24_hours: bool | None) -> int:
    """How long the replaced secret keeps signing: `expire_previous_in` when given, else OpenAI's flag
    (24 h or none), else the operator's default (`TUNEFORGE_WEBHOOK_SECRET_OVERLAP`, 24 h)."""
    if expire_previous_in is not None:
        return expire_previous_in
    if keep_old_secret_active_for_24_hours is not None:
        return DAY if keep_old_secret_active_for_24_hours else 0
    return get_settings().webhook_secret_overlap


def rotate(endpoint: WebhookEndpoint, overlap: int) -> None:
    """Give `endpoint` a new secret; the current one signs too for `overlap` seconds (none when 0)."""
    now = utcnow()
    endpoint.previous_secret = endpoint.secret if overlap > 0 else None
    endpoint.previous_secret_expires_at = now + timedelta(seconds=overlap) if overlap > 0 else None
    endpoint.secret = new_secret()
    endpoint.updated_at = now


def previous_expires_at(endpoint: WebhookEndpoint, now: datetime | None = None) -> datetime | None:
    """When the previous secret stops signing, while it still does; None otherwise."""
    expires = endpoint.previous_secret_expires_at
    if endpoint.previous_secret is None or expires is None or expires <= (now or utcnow()):
        return None
    return expires


def signing_secrets(endpoint: WebhookEndpoint, now: datetime | None = None) -> tuple[str, ...]:
    """The secrets that sign an attempt made `now`: the current one, then the previous one in its window."""
    if previous_expires_at(endpoint, now) is None:
        return (endpoint.secret,)
    return endpoint.secret, endpoint.previous_secret  # type: ignore[return-value]
