"""Standard Webhooks signatures, the scheme OpenAI's webhooks use (and `openai`'s `client.webhooks.unwrap`
checks): `webhook-signature: v1,<base64 HMAC-SHA256 of "{webhook-id}.{webhook-timestamp}.{body}">`,
keyed with the base64-decoded part of a `whsec_…` secret. While a rotated-out secret still signs, the
header carries one signature per secret, space-separated (the standard's zero-downtime rotation):
a receiver holding either secret verifies."""
from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Sequence

PREFIX = "whsec_"


def new_secret() -> str:
    """A fresh signing secret: `whsec_` + base64 of 32 random bytes."""
    return PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def hint(secret: str) -> str:
    """A masked form that names a secret without revealing it, e.g. `whsec_AbCd…wXyZ`."""
    return f"{secret[:len(PREFIX) + 4]}…{secret[-4:]}"


def sign(secret: str, msg_id: str, timestamp: int, body: str) -> str:
    """The `webhook-signature` header value for one attempt."""
    key = base64.b64decode(secret.removeprefix(PREFIX))
    digest = hmac.new(key, f"{msg_id}.{timestamp}.{body}".encode(), hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def headers(signing_secrets: Sequence[str], msg_id: str, timestamp: int, body: str) -> dict[str, str]:
    """Every header one delivery attempt carries; one signature per secret in `signing_secrets`."""
    signature = " ".join(sign(secret, msg_id, timestamp, body) for secret in signing_secrets)
    return {"content-type": "application/json", "user-agent": "tuneforge-webhooks/1",
            "webhook-id": msg_id, "webhook-timestamp": str(timestamp), "webhook-signature": signature}
