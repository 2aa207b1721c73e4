"""Webhook tests: receivers on 127.0.0.1, so private addresses are allowed (the operator setting
TUNEFORGE_WEBHOOK_ALLOW_PRIVATE), and retries come fast."""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.overrides import settings_override  # noqa: F401 (fixture)


@pytest.fixture(autouse=True)
def local_receivers(settings_override) -> None:  # noqa: F811
    settings_override(webhook_allow_private=True, webhook_retry_base=0.2, webhook_retry_max=1.0,
                      webhook_max_attempts=3, webhook_timeout=2.0)


@pytest.fixture(scope="module")
def live_url(database) -> Iterator[str]:
    """The app on a real socket, for the official `openai` client's webhook methods."""
    from app.main import app
    from tests.live import serve

    with serve(app) as url:
        yield url
