"""A real service: `tuneforge api` and `tuneforge worker` as separate processes on the real
PostgreSQL and Redis, with their own queue so other tests' messages never reach this worker."""
from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest

from tests.conftest import RUN_ID, new_tenant, quiesce_jobs
from tests.harness import Service, start_service


@pytest.fixture(scope="module")
def service(database, registered_tiny_model, data_dir) -> Iterator[Service]:
    quiesce_jobs()
    svc = start_service(dict(os.environ, TUNEFORGE_QUEUE_NAME=f"tuneforge.e2e.{RUN_ID}"))
    yield svc
    svc.stop()


@pytest.fixture(scope="module")
def openai_client(service):
    from openai import OpenAI

    _, key = new_tenant()
    return OpenAI(base_url=f"{service.url}/v1", api_key=key, max_retries=0, timeout=60)


def wait_for(fetch, predicate, timeout: float = 180, interval: float = 0.3):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fetch()
        if predicate(value):
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out; last value: {value}")
