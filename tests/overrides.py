"""Shared test fixtures and rows that several folders use: settings changed for one test, and bare
job rows (no files behind them: enough for state, events, webhooks and metrics)."""
from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from app.core.config import get_settings
from app.core.db import session_scope
from app.core.ids import new_id
from app.models import Job
from app.models.job import JobStatus

HYPERPARAMETERS = {"n_epochs": 1, "batch_size": 4, "learning_rate_multiplier": 1.0}


def insert_job(tenant_id: str, status: JobStatus = JobStatus.running, **values) -> str:
    """A committed job row of `tenant_id`."""
    with session_scope() as db:
        job = Job(id=new_id("ftjob-"), tenant_id=tenant_id, model="tiny-bert", training_file="file-x", seed=1,
                  method={"type": "bitfit", "bitfit": {"hyperparameters": HYPERPARAMETERS}}, status=status,
                  attempt=1, **values)
        db.add(job)
        return job.id


@pytest.fixture
def settings_override() -> Iterator[Callable[..., None]]:
    """Change settings for one test (the cached settings object the app reads), restored after it."""
    settings = get_settings()
    saved = settings.model_dump()

    def override(**values) -> None:
        for name, value in values.items():
            setattr(settings, name, value)
    yield override
    for name, value in saved.items():
        setattr(settings, name, value)
