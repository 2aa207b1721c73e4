"""The dashboard's tests share what other suites already build: a LoRA job trained to success in this
process (tests/api), and a real `tuneforge api` + `tuneforge worker` service (tests/e2e)."""
from __future__ import annotations

import pytest

from tests.api.conftest import trained_job  # noqa: F401  (a fixture: pytest finds it here)
from tests.api.helpers import auth
from tests.e2e.conftest import service  # noqa: F401  (a fixture: pytest finds it here)

UI_COOKIE = "tuneforge_ui_key"


@pytest.fixture
def browser_client(client):
    """The in-process app as a browser sees it: cookies kept, redirects not followed."""
    client.follow_redirects = False
    client.cookies.clear()
    return client


def log_in(client, key: str):
    """Post the dashboard's login form as the page does (same origin)."""
    return client.post("/ui/login", data={"api_key": key}, headers={"Origin": str(client.base_url)})


def create_queued_job(client, key: str, model: str, **fields) -> dict:
    """A job nobody runs (no worker consumes this process's test queue): queued for the whole test."""
    from tests.api.helpers import classification_rows, jsonl, upload

    train = upload(client, key, jsonl(classification_rows(8))).json()["id"]
    response = client.post("/v1/fine_tuning/jobs", headers=auth(key),
                           json={"model": model, "training_file": train, **fields})
    assert response.status_code == 200, response.text
    return response.json()
