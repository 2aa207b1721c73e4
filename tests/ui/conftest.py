"""The dashboard's tests share what other suites already build: a LoRA job trained to success in this
process (tests/api)."""
from __future__ import annotations

from tests.api.conftest import trained_job  # noqa: F401  (a fixture: pytest finds it here)
from tests.api.helpers import auth


def create_queued_job(client, key: str, model: str, **fields) -> dict:
    """A job nobody runs (no worker consumes this process's test queue): queued for the whole test."""
    from tests.api.helpers import classification_rows, jsonl, upload

    train = upload(client, key, jsonl(classification_rows(8))).json()["id"]
    response = client.post("/v1/fine_tuning/jobs", headers=auth(key),
                           json={"model": model, "training_file": train, **fields})
    assert response.status_code == 200, response.text
    return response.json()
