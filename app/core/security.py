"""API keys: random, shown once, stored as a SHA-256 digest (keys carry 256 bits of entropy)."""
import hashlib
import secrets

KEY_PREFIX = "tf-"


def generate_api_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()
