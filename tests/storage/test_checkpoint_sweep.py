"""The maintenance pass's sweep of stored checkpoint snapshots (app.jobs.checkpoint_sweep), against moto's real
S3 server through s3fs: a succeeded job's go at once, a failed or cancelled one's (cancelled while paused
included) after the grace, a paused or running job's stay, and those of a job no row names go once old."""
from __future__ import annotations

from datetime import timedelta

from app.core.config import get_settings
from app.core.object_store import ObjectStore
from app.jobs import checkpoint_store
from app.jobs.checkpoint_sweep import sweep_stored_checkpoints
from app.core.db import session_scope
from app.models.base import utcnow
from tests.storage.test_s3_checkpoints import store  # noqa: F401 - a fixture
from tests.storage.test_s3 import s3  # noqa: F401 - a fixture
from tests.workers.test_maintenance import _job


def _stored(store: ObjectStore, job_id: str, root) -> None:
    """One real snapshot (a blob and its manifest), as the worker's mirror uploads it."""
    (root / job_id / "step-00000001").mkdir(parents=True)
    (root / job_id / "step-00000001" / "state.json").write_text(job_id)
    files = checkpoint_store.local_files(root / job_id, {})
    checkpoint_store.upload(store, job_id, checkpoint_store.Snapshot(1, 1, files), root / job_id, set())
    assert checkpoint_store.snapshot_keys(store, job_id)


def test_snapshots_of_jobs_that_will_not_resume_are_swept(store, tenant, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.setattr(get_settings(), "checkpoint_grace", 3600.0)
    long_ago, just_now = utcnow() - timedelta(hours=2), utcnow() - timedelta(minutes=1)
    jobs = {
        "succeeded": _job(tenant[0], status="succeeded", finished_at=just_now),
        "failed_long_ago": _job(tenant[0], status="failed", finished_at=long_ago),
        "cancelled_while_paused": _job(tenant[0], status="cancelled", finished_at=long_ago, attempt=1),
        "failed_just_now": _job(tenant[0], status="failed", finished_at=just_now),
        "cancelled_just_now": _job(tenant[0], status="cancelled", finished_at=just_now),
        "paused": _job(tenant[0], status="paused", attempt=1),
        "running": _job(tenant[0], status="running", attempt=1, worker_id="w:1", heartbeat_at=utcnow()),
        "no_row": "ftjob-deleted-long-ago",
    }
    for job_id in jobs.values():
        _stored(store, job_id, tmp_path)
    with session_scope() as db:
        swept = sweep_stored_checkpoints(db, store)
    gone = {"succeeded", "failed_long_ago", "cancelled_while_paused"}
    assert set(swept) == {jobs[name] for name in gone}
    for name, job_id in jobs.items():
        assert bool(store.list(checkpoint_store.job_prefix(job_id))) == (name not in gone), name
    monkeypatch.setattr(get_settings(), "checkpoint_grace", 0.0)  # the grace passes: the rest of the ended go
    with session_scope() as db:
        swept = sweep_stored_checkpoints(db, store)
    assert set(swept) == {jobs["failed_just_now"], jobs["cancelled_just_now"], jobs["no_row"]}
    assert set(store.children(checkpoint_store.PREFIX)) == {jobs["paused"], jobs["running"]}
